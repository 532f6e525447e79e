"""The ASG model of asg-trainer (trainer/src/model/asg.rs, anatomy.rs, losses.rs) written again in PyTorch, to time a
training step against Candle on the same machine: same layers, sizes, losses, batch and input;
synthetic batches (data loading excluded on both sides), AdamW.

Usage: python bench/train_torch.py trainer/configs/default.toml [STEPS]
Prints one JSON line like trainer/examples/train_bench.rs. Needs torch (PyPI); not run in CI.
"""
import json
import math
import sys
import time
import tomllib

import torch
import torch.nn as nn
import torch.nn.functional as F

REGIONS, FINDINGS = 29, 40


class Attention(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.h = h

    def forward(self, q_in, mem, mask=None):
        b, tq, d = q_in.shape
        tk = mem.shape[1]
        h, dh = self.h, d // self.h
        q = self.q(q_in).view(b, tq, h, dh).transpose(1, 2)
        k = self.k(mem).view(b, tk, h, dh).transpose(1, 2)
        v = self.v(mem).view(b, tk, h, dh).transpose(1, 2)
        s = q @ k.transpose(2, 3) / math.sqrt(dh)
        if mask is not None:
            s = s + mask
        a = s.softmax(-1)
        out = (a @ v).transpose(1, 2).reshape(b, tq, d)
        return self.o(out), a


class FF(nn.Module):
    def __init__(self, d, hidden):
        super().__init__()
        self.a, self.b = nn.Linear(d, hidden), nn.Linear(hidden, d)

    def forward(self, x):
        return self.b(F.gelu(self.a(x), approximate="tanh"))


class EncoderLayer(nn.Module):
    def __init__(self, d, h, ff):
        super().__init__()
        self.ln1, self.attn, self.ln2, self.ff = nn.LayerNorm(d), Attention(d, h), nn.LayerNorm(d), FF(d, ff)

    def forward(self, x, mask):
        n = self.ln1(x)
        x = x + self.attn(n, n, mask)[0]
        return x + self.ff(self.ln2(x))


class DecoderLayer(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.ln0, self.self_attn = nn.LayerNorm(d), Attention(d, h)
        self.ln1, self.cross = nn.LayerNorm(d), Attention(d, h)
        self.ln2, self.ff = nn.LayerNorm(d), FF(d, 2 * d)

    def forward(self, q, mem):
        n = self.ln0(q)
        q = q + self.self_attn(n, n)[0]
        c, a = self.cross(self.ln1(q), mem)
        q = q + c
        return q + self.ff(self.ln2(q)), a


class QueryDecoder(nn.Module):
    def __init__(self, n, d, layers, h):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(n, d) * 0.5)
        self.layers = nn.ModuleList(DecoderLayer(d, h) for _ in range(max(layers, 1)))
        self.ln = nn.LayerNorm(d)

    def forward(self, mem):
        q = self.queries.unsqueeze(0).expand(mem.shape[0], -1, -1)
        a = None
        for layer in self.layers:
            q, a = layer(q, mem)
        return self.ln(q), a.mean(1)


def conv_bn(cin, cout, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


ANATOMY = 6


class AnatomyHead(nn.Module):
    """trainer/src/model/anatomy.rs: a 3x3 conv + BN + ReLU on each CNN stage from `from_stage`,
    the deeper ones upsampled (nearest) to the first's size and summed, a fuse conv, a 1x1 out."""

    def __init__(self, channels, from_stage, width):
        super().__init__()
        self.from_stage = from_stage
        self.laterals = nn.ModuleList(conv_bn(c, width, 1) for c in channels[from_stage:])
        self.fuse = conv_bn(width, width, 1)
        self.out = nn.Conv2d(width, ANATOMY, 1)

    def forward(self, maps):
        total = None
        for lateral, x in zip(self.laterals, maps[self.from_stage:]):
            h = lateral(x)
            if total is not None:
                h = F.interpolate(h, size=total.shape[-2:], mode="nearest")
            total = h if total is None else total + h
        return self.out(self.fuse(total))


def anatomy_loss(logits, targets):
    """trainer/src/model/losses.rs `anatomy`: BCE + soft Dice per (image, channel), all known."""
    x, y = logits.flatten(2), targets.flatten(2)
    per = (x.relu() - x * y + torch.log1p(torch.exp(-x.abs()))).mean(2)
    p = torch.sigmoid(x)
    dice = 1 - (2 * (p * y).sum(2) + 1) / (p.sum(2) + y.sum(2) + 1)
    return (per + dice).mean()


class Asg(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.stages, cin = nn.ModuleList(), 1
        for c in m["channels"]:
            self.stages.append(nn.Sequential(conv_bn(cin, c, 2), conv_bn(c, c, 1)))
            cin = c
        self.anatomy = (
            AnatomyHead(m["channels"], m.get("anatomy_from_stage", 1), m.get("anatomy_dim", 32))
            if m.get("anatomy_head", False)
            else None
        )
        g = m["input_size"] >> len(m["channels"])
        self.g = g
        dd, td, e = m["decoder_dim"], m["text_dim"], m["embed_dim"]
        self.image_global, self.image_local = nn.Linear(cin, e), nn.Linear(cin, e)
        self.memory = nn.Linear(cin, dd)
        self.memory_pos = nn.Parameter(torch.randn(g * g, dd) * 0.1)
        self.tags = QueryDecoder(FINDINGS, dd, m["decoder_layers"], m["decoder_heads"])
        self.tag_w = nn.Parameter(torch.randn(FINDINGS, dd) / math.sqrt(dd))
        self.tag_b = nn.Parameter(torch.full((FINDINGS,), -2.0))
        self.boxes = QueryDecoder(REGIONS, dd, m["decoder_layers"], m["decoder_heads"])
        self.box_head = nn.Linear(dd, 4)
        self.region_head = nn.Linear(cin, FINDINGS)
        self.tok = nn.Embedding(m["vocab_size"], td)
        self.pos = nn.Parameter(torch.randn(m["max_tokens"], td) * 0.02)
        self.text = nn.ModuleList(EncoderLayer(td, m["text_heads"], m["text_ff"]) for _ in range(m["text_layers"]))
        self.text_ln = nn.LayerNorm(td)
        self.text_global, self.text_local = nn.Linear(td, e), nn.Linear(td, e)

    def weights(self, boxes):
        g = self.g
        lo = torch.arange(g, dtype=torch.float32) / g
        hi = lo + 1.0 / g

        def ov(a, z):
            return ((torch.minimum(z, hi) - torch.maximum(a, lo)) * g).clamp(0, 1)

        wx = ov(boxes[..., 0:1], boxes[..., 2:3])
        wy = ov(boxes[..., 1:2], boxes[..., 3:4])
        w = (wy.unsqueeze(3) * wx.unsqueeze(2)).flatten(2)
        return w / (w.sum(2, keepdim=True) + 1e-6)


def norm(x):
    return x / (x.norm(dim=-1, keepdim=True) + 1e-6)


def ce_diag(z):
    return -torch.diagonal(z.log_softmax(-1)).mean()


def ira(v, t, tau):
    z = v @ t.T / tau
    return ce_diag(z) + ce_diag(z.T)


def soft(v, t, tags, tau):
    y = tags / (tags.norm(dim=1, keepdim=True) + 1e-12)
    n = tags.shape[0]
    tt = 0.8 * torch.eye(n) + 0.2 * (y @ y.T) + 1e-6
    tt = tt / tt.sum(1, keepdim=True)
    z = v @ t.T / tau

    def skl(p, q):
        return ((p - q) * (p.log() - q.log())).sum() / p.shape[0]

    return skl(tt, z.softmax(-1) + 1e-8) + skl(tt.T, z.T.softmax(-1) + 1e-8)


def bce(x, y, m):
    per = x.relu() - x * y + torch.log1p(torch.exp(-x.abs()))
    return (per * m).sum() / (m.sum() + 1e-6)


def giou(p, t, m):
    def area(x1, y1, x2, y2):
        return (x2 - x1).relu() * (y2 - y1).relu()

    inter = area(torch.maximum(p[:, 0], t[:, 0]), torch.maximum(p[:, 1], t[:, 1]), torch.minimum(p[:, 2], t[:, 2]), torch.minimum(p[:, 3], t[:, 3]))
    union = area(*p.unbind(1)) + area(*t.unbind(1)) - inter
    hull = area(torch.minimum(p[:, 0], t[:, 0]), torch.minimum(p[:, 1], t[:, 1]), torch.maximum(p[:, 2], t[:, 2]), torch.maximum(p[:, 3], t[:, 3]))
    g = inter / (union + 1e-7) - (hull - union) / (hull + 1e-7)
    return ((1 - g) * m).sum() / (m.sum() + 1e-6)


def step(model, batch, tau, weights):
    images, boxes, ids, tags, regions, avg, masks = batch
    b = images.shape[0]
    maps, h = [], images
    for stage in model.stages:
        h = stage(h)
        maps.append(h)
    grid = h.flatten(2).transpose(1, 2)
    v = norm(model.image_global(grid.mean(1)))
    mem = model.memory(grid) + model.memory_pos
    tq, _ = model.tags(mem)
    tag_logits = (tq * model.tag_w).sum(-1) + model.tag_b
    bq, _ = model.boxes(mem)
    raw = torch.sigmoid(model.box_head(bq))
    cx, cy, w, hh = raw.unbind(-1)
    pred = torch.stack([cx - w / 2, cy - hh / 2, cx + w / 2, cy + hh / 2], -1)
    x = model.tok(ids) + model.pos[: ids.shape[1]]
    mask = torch.zeros(b, 1, 1, ids.shape[1])
    for layer in model.text:
        x = layer(x, mask)
    tokens = model.text_ln(x)
    t = norm(model.text_global(tokens[:, 0]))
    feats = model.weights(boxes) @ grid
    remb = norm(model.image_local(feats))
    rlog = model.region_head(feats)
    ones_r = torch.ones(b * REGIONS)
    loss = ira(v, t, tau) + 5 * bce(tag_logits, tags, torch.ones_like(tags)) + soft(v, t, tags, tau)
    loss = loss + 5 * (pred.reshape(-1, 4) - boxes.reshape(-1, 4)).abs().mean(1).mean() + 2 * giou(pred.reshape(-1, 4), boxes.reshape(-1, 4), ones_r)
    loss = loss + bce(rlog, regions, torch.ones_like(regions))
    if model.anatomy is not None:
        loss = loss + weights.get("anatomy", 0.0) * anatomy_loss(model.anatomy(maps), masks)
    arsa = []
    for i in range(b):
        s = norm(model.text_local(avg[i] @ tokens[i]))
        r = remb[i, [0, 3, 6, 9]]
        arsa.append(ira(r, s, tau))
    return loss + torch.stack(arsa).mean()


def main():
    cfg = tomllib.load(open(sys.argv[1], "rb"))
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    m = {
        "input_size": 224, "channels": [32, 64, 128, 256], "embed_dim": 128, "text_dim": 128,
        "text_layers": 2, "text_heads": 4, "text_ff": 256, "max_tokens": 160, "vocab_size": 2000,
        "decoder_dim": 128, "decoder_layers": 1, "decoder_heads": 4,
    }
    m.update(cfg.get("model", {}))
    b = cfg.get("train", {}).get("batch_size", 16)
    torch.manual_seed(1)
    model = Asg(m)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    s, t = m["input_size"], min(96, m["max_tokens"])

    def batch():
        x, y = torch.rand(b, REGIONS, 1) * 0.6, torch.rand(b, REGIONS, 1) * 0.6
        avg = torch.zeros(b, 4, t)
        for row in range(4):
            avg[:, row, 1 + row * 8 : 9 + row * 8] = 1 / 8
        side = s >> (m.get("anatomy_from_stage", 1) + 1)
        masks = torch.zeros(b, ANATOMY, side, side)
        for i in range(b):
            for c in range(ANATOMY):
                x0, y0 = torch.randint(0, side // 2, (2,)).tolist()
                masks[i, c, y0 : y0 + side // 3, x0 : x0 + side // 3] = 1
        return (
            torch.rand(b, 1, s, s) * 4 - 2,
            torch.cat([x, y, x + 0.3, y + 0.3], -1),
            torch.randint(4, m["vocab_size"], (b, t)),
            (torch.rand(b, FINDINGS) < 0.1).float(),
            (torch.rand(b, REGIONS, FINDINGS) < 0.05).float(),
            avg,
            masks,
        )

    batches = [batch() for _ in range(3)]

    def one(i):
        opt.zero_grad()
        loss = step(model, batches[i % 3], 0.07, cfg.get("loss", {}))
        loss.backward()
        opt.step()
        return loss.item()

    one(0)
    start = time.perf_counter()
    for i in range(steps):
        last = one(i + 1)
    per = (time.perf_counter() - start) / steps
    print(json.dumps({
        "framework": f"pytorch {torch.__version__}", "threads": torch.get_num_threads(), "config": sys.argv[1],
        "batch": b, "input": s, "parameters": sum(p.numel() for p in model.parameters()),
        "seconds_per_step": per, "images_per_second": b / per, "last_loss": last,
    }))


if __name__ == "__main__":
    main()
