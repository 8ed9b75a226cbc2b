"""Many MLPs as one: stacked, zero-padded weights and a fused per-model Adam / RMSprop update.

Model ``m`` of a stack of ``M`` holds, for each Linear layer ``l``, ``W[l][m]`` of shape
``(in, out)`` (the transpose of ``nn.Linear.weight``) and ``b[l][m]`` of shape ``(1, out)``,
zero-padded to the stack's widest layer. A forward pass is one ``torch.baddbmm`` per layer for all
models at once. Padded units need no mask: their weights and biases start at exactly zero, so their
pre-activation is 0, LeakyReLU(0) = 0 and dropout keeps 0; their gradients are exactly zero too
(the rows of the next layer that read them are zero), and so are weight decay's ``wd * 0``,
Adam's and RMSprop's moments and updates. Nothing leaks into or out of the padding.

Per-model hyperparameters (learning rate, weight decay, dropout, optimizer) are tensors of shape
``(M, 1, 1)``, so one element-wise update serves every model. Adam and RMSprop share it:

    g  = grad + wd * p                          (torch's weight_decay: L2 added to the gradient)
    m  = beta1 * m + (1 - beta1) * g            (RMSprop: beta1 = 0, so m = g)
    v  = beta2 * v + (1 - beta2) * g * g        (RMSprop: beta2 = alpha = 0.99)
    p -= lr / (1 - c1**t) * m / (sqrt(v) / sqrt(1 - c2**t) + eps)
                                                 (Adam: c = beta; RMSprop: c = 0, no correction)

which is ``torch.optim.Adam`` / ``torch.optim.RMSprop`` (defaults, momentum 0) term by term.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..training.models.mlp import MLP

__all__ = ["MLPStack", "OPTIMIZER_BETAS", "update_path"]

# optimizer -> (beta1, beta2, correction c1, correction c2), torch's defaults
OPTIMIZER_BETAS = {"adam": (0.9, 0.999, 0.9, 0.999), "rmsprop": (0.0, 0.99, 0.0, 0.0)}
EPS = 1e-8


class MLPStack:
    """``M`` MLPs of equal depth as stacked, padded tensors, trained together.

    Parameters
    ----------
    modules : list of MLP
        The models' initial weights (copied; widths may differ, depth may not).
    configs : list of dict
        Each model's ``lr``, ``weight_decay``, ``dropout``, ``optimizer`` (``adam``/``rmsprop``).
    device : str or torch.device
    negative_slope : float
        LeakyReLU's slope, as in ``MLP``.
    """

    def __init__(self, modules: list[MLP], configs: list[dict], device="cpu", negative_slope: float = 0.01):
        depths = {len(m.linears) for m in modules}
        if len(depths) != 1:
            raise ValueError(f"a stack holds MLPs of one depth, got depths {sorted(depths)}")
        self.device = torch.device(device)
        self.negative_slope = float(negative_slope)
        self.widths = [tuple(lin.out_features for lin in m.linears[:-1]) for m in modules]
        self.n_inputs = modules[0].linears[0].in_features
        self.n_classes = modules[0].linears[-1].out_features
        sizes = [self.n_inputs, *[max(w[i] for w in self.widths) for i in range(depths.pop() - 1)],
                 self.n_classes]
        M = len(modules)
        self.params: list[torch.Tensor] = []
        for layer, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=False)):
            W = torch.zeros(M, n_in, n_out)
            b = torch.zeros(M, 1, n_out)
            for m, module in enumerate(modules):
                lin = module.linears[layer]
                W[m, :lin.in_features, :lin.out_features] = lin.weight.detach().T
                b[m, 0, :lin.out_features] = lin.bias.detach()
            self.params += [W.to(self.device), b.to(self.device)]
        for p in self.params:
            p.requires_grad_(True)

        def column(values):
            return torch.tensor(values, dtype=torch.float32, device=self.device).view(M, 1, 1)

        betas = [OPTIMIZER_BETAS[c.get("optimizer", "adam")] for c in configs]
        self.lr = column([float(c.get("lr", 1e-3)) for c in configs])
        self.weight_decay = column([float(c.get("weight_decay", 0.0)) for c in configs])
        self.keep = column([1.0 - float(c.get("dropout", 0.0)) for c in configs])
        self.beta1, self.beta2, self.c1, self.c2 = (column([b[i] for b in betas]) for i in range(4))
        self.step_count = torch.zeros(M, 1, 1, device=self.device)
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.has_dropout = bool((self.keep < 1).any())

    def __len__(self) -> int:
        return self.params[0].shape[0]

    def forward(self, x: torch.Tensor, train: bool = False, generator: torch.Generator | None = None):
        """Logits ``(M, B, n_classes)`` for inputs ``x`` of shape ``(M, B, n_inputs)``."""
        h = x
        n_layers = len(self.params) // 2
        for layer in range(n_layers):
            W, b = self.params[2 * layer], self.params[2 * layer + 1]
            h = torch.baddbmm(b, h, W)
            if layer < n_layers - 1:
                h = F.leaky_relu(h, self.negative_slope)
                if train and self.has_dropout:
                    keep = torch.rand(h.shape, device=h.device, generator=generator) < self.keep
                    h = h * keep / self.keep
        return h

    @torch.no_grad()
    def step(self, active: torch.Tensor | None = None) -> None:
        """One fused Adam/RMSprop update of every model (of those with ``active[m]`` true)."""
        if active is not None:
            active = active.view(-1, 1, 1)
            saved = [(m.clone(), v.clone()) for m, v in zip(self.exp_avg, self.exp_avg_sq, strict=False)]
        self.step_count += 1 if active is None else active
        t = self.step_count.clamp(min=1)
        step_size = self.lr / (1 - self.c1 ** t)
        if active is not None:
            step_size = step_size * active  # an inactive model's parameters do not move
        correction2 = (1 - self.c2 ** t).sqrt()
        update = _compiled_update() if self.device.type == "cuda" else _update
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq, strict=False):
            args = (p, p.grad, m, v, step_size, self.weight_decay, 1 - self.beta1, 1 - self.beta2, correction2)
            try:
                update(*args)
            except Exception:  # noqa: BLE001 - the compiler failed before running: same math, eager
                _COMPILED[:] = [_update]
                update = _update
                update(*args)
            p.grad = None
        if active is not None:  # nor do its moments
            for (m_old, v_old), m, v in zip(saved, self.exp_avg, self.exp_avg_sq, strict=False):
                m.copy_(torch.where(active, m, m_old))
                v.copy_(torch.where(active, v, v_old))

    def select(self, keep: torch.Tensor | list[int]) -> None:
        """Keep only the models ``keep`` (indices, in order): stopped models leave the stack."""
        idx = torch.as_tensor(keep, dtype=torch.int64, device=self.device)
        with torch.no_grad():
            self.params = [p.index_select(0, idx).requires_grad_(True) for p in self.params]
            self.exp_avg = [t.index_select(0, idx) for t in self.exp_avg]
            self.exp_avg_sq = [t.index_select(0, idx) for t in self.exp_avg_sq]
            for name in ("lr", "weight_decay", "keep", "beta1", "beta2", "c1", "c2", "step_count"):
                setattr(self, name, getattr(self, name).index_select(0, idx))
        self.widths = [self.widths[i] for i in idx.tolist()]
        self.has_dropout = bool((self.keep < 1).any())

    def _slices(self, m: int):
        """Model ``m``'s own (unpadded) part of each stacked parameter, in ``self.params`` order."""
        sizes = [self.n_inputs, *self.widths[m], self.n_classes]
        for layer, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=False)):
            yield 2 * layer, (m, slice(0, n_in), slice(0, n_out))
            yield 2 * layer + 1, (m, slice(None), slice(0, n_out))

    def optimizer_state(self, m: int) -> dict:
        """Model ``m``'s Adam/RMSprop state (step count, moments without padding), on the CPU."""
        return {"step": float(self.step_count[m].item()),
                "exp_avg": [self.exp_avg[j][s].detach().clone().cpu() for j, s in self._slices(m)],
                "exp_avg_sq": [self.exp_avg_sq[j][s].detach().clone().cpu() for j, s in self._slices(m)]}

    @torch.no_grad()
    def load_optimizer_state(self, m: int, state: dict) -> None:
        """Put ``optimizer_state(m)``'s values back into model ``m`` (the padding stays zero)."""
        self.step_count[m] = state["step"]
        for (j, s), avg, avg_sq in zip(self._slices(m), state["exp_avg"], state["exp_avg_sq"], strict=False):
            self.exp_avg[j][s] = avg.to(self.device)
            self.exp_avg_sq[j][s] = avg_sq.to(self.device)

    def state_dict(self, m: int) -> dict[str, torch.Tensor]:
        """Model ``m`` as the ``state_dict`` of an ``MLP`` of its own widths (on the CPU)."""
        sizes = [self.n_inputs, *self.widths[m], self.n_classes]
        state = {}
        for layer, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=False)):
            W, b = self.params[2 * layer], self.params[2 * layer + 1]
            pos = 1 + 3 * layer  # MLP.layers: Flatten, then (Linear, LeakyReLU, Dropout) per layer
            state[f"layers.{pos}.weight"] = W[m, :n_in, :n_out].detach().T.contiguous().cpu()
            state[f"layers.{pos}.bias"] = b[m, 0, :n_out].detach().clone().cpu()
        return state


def _update(p, g, m, v, step_size, weight_decay, one_minus_beta1, one_minus_beta2, correction2):
    """In place: ``g += wd p``; ``m``, ``v`` moving averages (``lerp``, as torch's Adam);
    ``p -= step_size * m / (sqrt(v) / correction2 + eps)``."""
    g = g.addcmul_(p, weight_decay)
    m.lerp_(g, one_minus_beta1)
    v.lerp_(g * g, one_minus_beta2)
    denom = v.sqrt().div_(correction2).add_(EPS)
    p.sub_(torch.div(m, denom, out=denom).mul_(step_size))


_COMPILED = []


def update_path(device) -> str:
    """Which optimizer update a stack on ``device`` runs: "compiled" (one fused kernel, GPU),
    "eager" (the same math op by op: the CPU, or a GPU where compiling failed) or "not yet"."""
    if torch.device(device).type != "cuda":
        return "eager"
    if not _COMPILED:
        return "not yet"
    return "eager (compiling failed)" if _COMPILED[0] is _update else "compiled"


def _compiled_update():
    """``_update`` fused into one kernel by ``torch.compile`` (GPU only), or ``_update`` itself
    where compilation is unavailable."""
    if not _COMPILED:
        try:
            fn = torch.compile(_update, dynamic=True, fullgraph=True)
        except Exception:  # noqa: BLE001 - no compiler: the eager update is the same math
            fn = _update
        _COMPILED.append(fn)
    return _COMPILED[0]
