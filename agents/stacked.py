"""K agents of one class and config trained as one: every parameter, buffer and optimizer state gets a leading
member dimension K, and one update moves all K members (`python -m suite run METHOD TASK --seeds 0-4`).

Design (why `torch.func.vmap` over the agents' own loss code, and not ensemble layers of width K×n): an
agent's losses are written for ONE member (its means, its min over critics, TD3+BC's λ = α / mean|Q|,
O-DICE's weights) and stay exactly that code. `SeedStack.call(fn, *args)` evaluates a method of the template
agent (member 0's object) for every member at once: `functional_call` swaps the stacked tensors into the
template's modules and `vmap` batches them over the member dimension, so each small matmul becomes one batched
matmul over K and every reduction stays per member. Re-writing each agent with K×n-wide ensemble layers would
need every reduction re-written per member (a second copy of each loss, easy to get subtly wrong: a mean over
K·B instead of B scales gradients); vmap gives the same batched kernels without that copy.

Gradients come from ordinary autograd on the SUM of the per-member losses: members share no parameter, so
d(Σ_k L_k)/dθ_k = dL_k/dθ_k exactly, and Adam (elementwise) on the stacked tensors is K independent Adams.
Anything that couples parameters is done per member explicitly (O-DICE's projection: `vmap` of
`orthogonal_combination` over the members' flat gradients). Each member draws its noise from its own torch
generator state (`draw`), the one a single-seed run of that seed would have, so member k reproduces the run of
seed k up to float rounding (batched kernels and the fused Adam's vector tails round differently; the tests
bound it). Agents opt in with a `stack(agents)` static method returning a `SeedStack` subclass whose `update`
mirrors the agent's own `update`; `stack_agents` falls back to `LoopStack` (the K agents one after another,
same numbers, no speed-up) for any other agent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vmap


def rng_state(device: torch.device) -> torch.Tensor:
    """The global torch generator state that an agent on `device` draws its noise from."""
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()


def set_rng_state(device: torch.device, state: torch.Tensor) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    else:
        torch.set_rng_state(state)


def tree_stack(items: Sequence[Any]) -> Any:
    """Stack a list of (nested dicts of) tensors along a new leading dimension."""
    if isinstance(items[0], dict):
        return {k: tree_stack([it[k] for it in items]) for k in items[0]}
    return torch.stack(items)


def _per_member(name: str, value, param: torch.Tensor) -> bool:
    """Whether an optimizer state entry is per parameter element (Adam's moments: stacked per member) rather
    than shared (the step count, the same for every member since they update together)."""
    return name != "step" and isinstance(value, torch.Tensor) and value.shape == param.shape


class _Caller(nn.Module):
    """Holds the template agent's modules so `functional_call` can swap their tensors; forward runs `fn`."""

    def __init__(self, modules: dict[str, nn.Module]):
        super().__init__()
        self.nets = nn.ModuleDict(modules)

    def forward(self, fn, *args):
        return fn(*args)


class LoopStack:
    """The K agents updated one after another, each with its own generator state: exactly K single runs
    interleaved. The fallback for agents without a vectorised `stack` (plug-ins, test agents)."""

    def __init__(self, agents: list, rng: list[torch.Tensor], device: torch.device):
        self.agents, self.rng, self.device = list(agents), list(rng), torch.device(device)

    @property
    def k(self) -> int:
        return len(self.agents)

    def draw(self, fn: Callable[[int], Any]) -> Any:
        """fn(k) for every member k under that member's generator state, results stacked."""
        saved = rng_state(self.device)
        out = []
        try:
            for k in range(self.k):
                set_rng_state(self.device, self.rng[k])
                out.append(fn(k))
                self.rng[k] = rng_state(self.device)
        finally:
            set_rng_state(self.device, saved)
        return tree_stack(out)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.draw(lambda k: self.agents[k].update({key: v[k] for key, v in batch.items()}))

    def sync(self) -> None:
        """Bring the member agents up to date (nothing to do here: they are the state)."""

    def keep(self, members: Sequence[int]) -> LoopStack:
        """A stack of the given members only (diverged members are dropped)."""
        self.sync()
        return type(self)([self.agents[i] for i in members], [self.rng[i] for i in members], self.device)


class SeedStack(LoopStack):
    """Stacked parameters, buffers and optimizer states of K agents (see the module docstring). Subclasses
    implement `update(batch)` for batches with a leading member dimension, returning (K,) metric tensors."""

    def __init__(self, agents: list, rng: list[torch.Tensor], device: torch.device):
        super().__init__(agents, rng, device)
        t = self.template = self.agents[0]
        self._modules = {n: m for n, m in vars(t).items() if isinstance(m, nn.Module)}
        self._loose = [n for n, v in vars(t).items() if isinstance(v, nn.Parameter)]  # e.g. CQL's log_alpha
        self._opt_names = [n for n, v in vars(t).items() if isinstance(v, torch.optim.Optimizer)]
        self._caller = _Caller(self._modules)
        # name -> the member tensors it stacks, and the stacked leaf
        self.members: dict[str, list[torch.Tensor]] = {}
        for n in self._modules:
            mods = [getattr(a, n) for a in self.agents]
            for pn, _ in mods[0].named_parameters():
                self.members[f"nets.{n}.{pn}"] = [m.get_parameter(pn) for m in mods]
            for bn, _ in mods[0].named_buffers():
                self.members[f"nets.{n}.{bn}"] = [m.get_buffer(bn) for m in mods]
        for n in self._loose:
            self.members[n] = [getattr(a, n) for a in self.agents]
        # Linear weights are stacked transposed, (K, in, out): under vmap a linear layer is then a plain
        # batched x @ W and its weight gradient comes out in the leaf's layout (stacked as (K, out, in), every
        # backward pass would copy a transposed gradient: ~25% of an O-DICE update with its 1024-wide policy)
        self.transposed = {f"nets.{n}.{mn}.weight" for n, mod in self._modules.items()
                           for mn, m in mod.named_modules() if isinstance(m, nn.Linear)}
        self.stacked = {key: torch.stack([self._layout(key, x.detach()) for x in xs]).requires_grad_(
            xs[0].requires_grad) for key, xs in self.members.items()}
        key_of = {id(x[0]): key for key, x in self.members.items()}
        self.optimizers = {n: self._stack_optimizer(n, key_of) for n in self._opt_names}

    # ---------------------------------------------------------------------------------------- set-up
    def _layout(self, key: str, member_tensor: torch.Tensor) -> torch.Tensor:
        """A member's tensor (or an optimizer moment of it) in the stacked layout, and back (an involution)."""
        return member_tensor.T if key in self.transposed else member_tensor

    def _stack_optimizer(self, name: str, key_of: dict[int, str]) -> torch.optim.Optimizer:
        """The twin of the template's optimizer `name` over the stacked tensors: same class, groups and
        hyper-parameters; the members' states (Adam moments) stacked, their common step count kept."""
        opts = [getattr(a, name) for a in self.agents]
        groups = [{**{h: v for h, v in g.items() if h != "params"},
                   "params": [self.stacked[key_of[id(p)]] for p in g["params"]]} for g in opts[0].param_groups]
        stacked = type(opts[0])(groups, **opts[0].defaults)
        for gi, g in enumerate(opts[0].param_groups):
            for pi, p in enumerate(g["params"]):
                states = [o.state.get(o.param_groups[gi]["params"][pi]) for o in opts]
                if not states[0]:
                    continue
                sp = stacked.param_groups[gi]["params"][pi]
                key = key_of[id(p)]
                stacked.state[sp] = {h: torch.stack([self._layout(key, s[h]) for s in states])
                                     if _per_member(h, v, p) else v.clone() for h, v in states[0].items()}
        return stacked

    def params(self, module: str) -> list[torch.Tensor]:
        """The stacked parameters of one of the template's modules, in its `parameters()` order."""
        prefix = f"nets.{module}."
        names = [f"{prefix}{pn}" for pn, _ in self._modules[module].named_parameters()]
        return [self.stacked[n] for n in names]

    # ------------------------------------------------------------------------------------ evaluation
    def call(self, fn: Callable, *args) -> Any:
        """fn(*args), a method of the template agent written for one member, for every member at once: each
        arg has a leading member dimension, and so has every output."""
        modules = {k: v.mT if k in self.transposed else v for k, v in self.stacked.items() if k.startswith("nets.")}
        loose = {k: self.stacked[k] for k in self._loose}

        def one(tensors, loose_tensors, *a):
            saved = {k: getattr(self.template, k) for k in loose_tensors}
            # modules with a `forward_stacked` (the same map, written for vmap) use it for the call
            stacked = [m for m in self._caller.modules() if hasattr(m, "forward_stacked")]
            try:
                for k, v in loose_tensors.items():
                    setattr(self.template, k, v)
                for m in stacked:
                    m.forward = m.forward_stacked
                return functional_call(self._caller, tensors, (fn, *a))
            finally:
                for k, v in saved.items():
                    setattr(self.template, k, v)
                for m in stacked:
                    del m.forward

        return vmap(one)(modules, loose, *args)

    @torch.no_grad()
    def soft_update(self, target: str, source: str, tau: float) -> None:
        """Polyak averaging of the stacked target module (`nets.soft_update` on all members at once)."""
        torch._foreach_lerp_(self.params(target), self.params(source), tau)

    @staticmethod
    def set_grads(params: list[torch.Tensor], flat: torch.Tensor) -> None:
        """Per-member flat gradients (K, numel) -> the stacked parameters' .grad, in `params` order."""
        offset = 0
        for p in params:
            n = p[0].numel()
            p.grad = flat[:, offset:offset + n].reshape(p.shape).contiguous()
            offset += n

    @staticmethod
    def flat(grads: Sequence[torch.Tensor | None], params: list[torch.Tensor]) -> torch.Tensor:
        """Stacked gradients (K, ...) of `params` -> one (K, numel) row per member (unused ones as zeros)."""
        k = params[0].shape[0]
        return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(k, -1)
                          for g, p in zip(grads, params, strict=True)], dim=1)

    # --------------------------------------------------------------------------------------- members
    @torch.no_grad()
    def sync(self) -> None:
        """Copy the stacked tensors and optimizer states back into the member agents (before they act or
        are checkpointed), so each member's state dict has the layout of a single-seed run."""
        for key, xs in self.members.items():
            for k, x in enumerate(xs):
                x.copy_(self._layout(key, self.stacked[key][k]))
        key_of = {id(v): key for key, v in self.stacked.items()}
        for name, stacked in self.optimizers.items():
            for a_i, agent in enumerate(self.agents):
                opt = getattr(agent, name)
                for g, sg in zip(opt.param_groups, stacked.param_groups, strict=True):
                    g.update({h: v for h, v in sg.items() if h != "params"})
                    for p, sp in zip(g["params"], sg["params"], strict=True):
                        st = stacked.state.get(sp)
                        if st:
                            key = key_of[id(sp)]
                            opt.state[p] = {h: self._layout(key, v[a_i]).clone(memory_format=torch.contiguous_format)
                                            if _per_member(h, v, sp)
                                            else v.clone() for h, v in st.items()}
        self.sync_extra()

    def sync_extra(self) -> None:
        """Per-member state outside tensors the stack holds (subclasses: e.g. TD3+BC's last actor loss)."""


def stack_agents(agents: list, rng: list[torch.Tensor], device) -> LoopStack:
    """The vectorised stack of `agents` if their class provides one (`stack`), else a `LoopStack`."""
    make = getattr(type(agents[0]), "stack", None)
    return make(agents, rng, torch.device(device)) if make else LoopStack(agents, rng, device)
