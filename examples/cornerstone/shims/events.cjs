// Node's `events` for a dependency (xmlbuilder2 via dcmjs) that subclasses EventEmitter at load.
class EventEmitter {
  constructor() { this._handlers = new Map(); }
  on(name, f) { (this._handlers.get(name) ?? this._handlers.set(name, []).get(name)).push(f); return this; }
  once(name, f) { const g = (...a) => { this.off(name, g); f(...a); }; return this.on(name, g); }
  off(name, f) { this._handlers.set(name, (this._handlers.get(name) ?? []).filter((h) => h !== f)); return this; }
  removeListener(name, f) { return this.off(name, f); }
  emit(name, ...args) { const hs = this._handlers.get(name) ?? []; hs.forEach((h) => h(...args)); return hs.length > 0; }
}
module.exports = { EventEmitter };
module.exports.EventEmitter = EventEmitter;
