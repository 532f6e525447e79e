// Node's `url` for code that a dependency (xmlbuilder2 via dcmjs) loads at start in the browser.
module.exports = { URL: globalThis.URL, URLSearchParams: globalThis.URLSearchParams };
