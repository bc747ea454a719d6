"""The chain loop: warm-up and sampling of any NumPyro ``MCMCKernel``, in compiled chunks.

NumPyro's kernels (and reprior's own, through the same interface) do the
transitions and the adaptation; this module only drives them, so that

* compilation is done ahead of time (``jit(...).lower(...).compile()``) and
  timed apart from warm-up and sampling;
* a recorded draw is post-processed (``collect_fn``) as soon as it is made,
  inside the compiled chunk, so raw high-dimensional states are never stored;
  an unbatched chain that has not moved since its previous draw (a rejected
  proposal) reuses what that draw computed from the position alone;
* progress is reported between chunks (``"compiling"`` first), and every
  chain reuses the same compiled executables (no recompilation between chains
  or chunks);
* exactly ``num_warmup`` and ``num_samples * thinning`` iterations run: a chunk
  takes the index of its first iteration, and iterations past the end are a
  ``lax.cond`` that leaves the state alone (the predicate is not batched, so
  under ``vmap`` it stays a branch and costs nothing);
* with a :class:`~reprior.inference.checkpoint.Checkpoint`, the run saves its kernel
  states (adaptation included) and draws at chunk boundaries and when it is
  interrupted, and a rerun continues from the last save;
* a finished run's last kernel states (:attr:`ChainRun.final_state`) start
  another (:class:`Start`), which then continues the same chains: with the same
  ``rng_key`` it records the draws that a longer run would have recorded next.

The warm-up and draw functions themselves (:func:`chain_functions`) are the one
definition of a chain in the package: :func:`run_chains` calls them in chunks,
and simulation-based calibration (:mod:`reprior.evaluation.sbc.runner`) calls
them once per phase inside its vectorised replications.

Chain methods: ``"sequential"`` runs one unbatched chain at a time;
``"vectorized"`` runs all chains as one ``vmap`` batch; ``"parallel"`` runs the
same batch sharded over every local device (``jax.sharding.Mesh`` and
``NamedSharding``, one ``jit``), chains per device vectorised; the chain count
is padded to a multiple of the device count with copies of the last chain,
which are dropped.  All three give the same chains for the same key.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from reprior.inference import checkpoint as _ckpt
from reprior._util.choices import CHAIN_METHODS
from reprior._util.interrupts import deferring

PHASES = ("warmup", "sampling")


@dataclass
class ChainRun:
    """Output of :func:`run_chains`; arrays have leading ``(chain, draw)`` axes.

    ``num_resumed``: iterations (all chains) restored from a checkpoint rather than run.
    ``final_state``: the kernel state of every chain after its last iteration (adaptation
    included), a pytree with a leading ``(num_chains,)`` axis; None when the run resumed from a
    checkpoint past the end of some chain (whose last state the checkpoint does not keep).
    """

    draws: dict
    stats: dict
    warmup_stats: dict
    timings: dict = field(default_factory=dict)
    num_traces: int = 0
    num_resumed: int = 0
    final_state: object = None


@dataclass
class Start:
    """Where continued chains start: the final kernel states of an earlier run.

    Attributes:
        arrays, spec: the states, as :func:`reprior.inference.checkpoint.flatten_tree` gives them for
            :attr:`ChainRun.final_state` (every leaf with a leading ``(num_chains,)`` axis).
        kernel_warmup: the ``num_warmup`` the kernel's ``init`` is called with (the warm-up
            schedule that the states went through; their adaptation is finished).
        num_draws: draws already recorded per chain; the next one is draw ``num_draws``
            (its key is ``fold_in(chain key, num_draws)``, as in one longer run).
    """

    arrays: list
    spec: dict
    kernel_warmup: int
    num_draws: int


def _chunk_size(total: int, target_chunks: int = 20) -> int:
    return max(1, math.ceil(total / target_chunks)) if total else 1


def _num_chunks(total: int) -> int:
    return -(-total // _chunk_size(total)) if total else 0


# ---------------------------------------------------------------------------
# The chunk functions
# ---------------------------------------------------------------------------


#: Statistics of a recorded draw that cover every iteration since the previous draw (its thinning
#: window), not only the recorded one: the cost counts are summed, and a draw is ``diverging`` or
#: ``nonfinite`` when any iteration of its window was.
WINDOW_STATS = {"num_grad_evals": jnp.sum, "num_logdensity_evals": jnp.sum, "diverging": jnp.any,
                "nonfinite": jnp.any}


def chain_functions(kernel, stats_fn, collect_fn, *, num_warmup: int, num_samples: int, thinning: int,
                    warmup_chunk: int | None = None, sample_chunk: int | None = None, draw_offset: int = 0,
                    with_evaluation: bool = False, window_stats: dict | None = None, trace_counter=None,
                    reuse_position: bool = False):
    """The two pure functions every chain of the package runs through, over one chain:
    ``warmup(state, start) -> (state, stats)`` and ``draw(state, consts, key, start) -> (state, (outputs, stats))``.

    Each runs a chunk of iterations from index ``start`` (``warmup_chunk`` and ``sample_chunk``
    iterations, default the whole phase); iterations at or past the end of the phase leave the
    state alone.  Warm-up records ``stats_fn(state)`` per iteration.  A draw advances ``thinning``
    iterations and records ``collect_fn(consts, fold_in(key, draw_offset + j), position)`` for
    draw ``j`` (with ``with_evaluation``, also the evaluation the kernel carries,
    ``state.evaluation`` or ``None``), with the statistics of its last iteration, except those in
    ``window_stats`` (default :data:`WINDOW_STATS`: ``{name: reduction}``), which are reduced over its
    whole thinning window.  :func:`run_chains` calls them chunk by chunk between checkpoints;
    simulation-based calibration calls each once inside its compiled replications.

    With ``reuse_position`` and a ``collect_fn`` in two parts (``collect_fn.parts``, a
    :class:`reprior.inference.sampling.CollectParts`), a draw whose position equals the previous
    draw's in the same chunk (every proposal of its thinning window rejected) reuses that draw's
    position part (the readout factorisation, test features, Rao-Blackwellised predictive, log
    marginal likelihood, hidden projections) and pays only for the per-draw part; the outputs are
    those without it, to float rounding (the position part then runs inside a branch, which the
    compiler may fuse differently).
    The test is a ``lax.cond`` on an unbatched predicate, so :func:`run_chains` asks for it only
    for unbatched chains (under ``vmap`` both branches would run).
    """
    warmup_len = num_warmup if warmup_chunk is None else warmup_chunk
    sample_len = num_samples if sample_chunk is None else sample_chunk
    window_stats = WINDOW_STATS if window_stats is None else window_stats
    traces = [] if trace_counter is None else trace_counter

    def step(state):
        return kernel.sample(state, (), {})

    def guarded(start, length, total, run, idle):
        """``run`` for iterations inside the phase, ``idle`` past its end (no test when ``start`` is a
        Python integer whose chunk lies inside the phase)."""
        if isinstance(start, int) and start + length <= total:
            return lambda carry, j: run(carry, start + j)
        return lambda carry, j: jax.lax.cond(start + j < total, run, idle, carry, start + j)

    def warmup(state, start):
        traces.append("warmup")

        def advance(carry, _):
            carry = step(carry)
            return carry, stats_fn(carry)

        def idle(carry, _):
            return carry, stats_fn(carry)

        return jax.lax.scan(guarded(start, warmup_len, num_warmup, advance, idle), state, jnp.arange(warmup_len))

    parts = getattr(collect_fn, "parts", None) if reuse_position else None

    def draw(state, consts, key, start):
        traces.append("draw")

        def thin(carry, _):
            carry = step(carry)
            s = stats_fn(carry)
            return carry, {name: s[name] for name in window_stats if name in s}

        def advance(carry, index):
            carry, window = jax.lax.scan(thin, carry, None, length=thinning)
            stats = stats_fn(carry)
            stats.update({name: window_stats[name](values) for name, values in window.items()})
            return carry, stats, getattr(carry, kernel.sample_field), jax.random.fold_in(key, draw_offset + index)

        def handed(state):  # the evaluation a draw is handed: with_evaluation, the kernel's (None if it carries none)
            return getattr(state, "evaluation", None) if with_evaluation else None

        def record(carry, index):
            carry, stats, sample, draw_key = advance(carry, index)
            if with_evaluation:
                return carry, (collect_fn(consts, draw_key, sample, handed(carry)), stats)
            return carry, (collect_fn(consts, draw_key, sample), stats)

        def skip(record):
            def idle(carry, index):
                shapes = jax.eval_shape(record, carry, index)[1]
                return carry, jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
            return idle

        if parts is None:
            return jax.lax.scan(guarded(start, sample_len, num_samples, record, skip(record)), state,
                                jnp.arange(sample_len))

        position_part = _PositionPart(parts.position, consts)

        def record_reusing(carry, index):
            state, (previous, cached, valid) = carry
            state, stats, sample, draw_key = advance(state, index)
            evaluation = handed(state)
            moved = jnp.logical_not(valid) | jnp.logical_not(_same_tree(sample, previous))
            arrays = jax.lax.cond(moved, position_part.arrays, lambda *_: cached, sample, evaluation)
            out = parts.draw(consts, draw_key, sample, evaluation, position_part.rebuild(arrays, evaluation))
            return (state, (sample, arrays, jnp.array(True))), (out, stats)

        first = getattr(state, kernel.sample_field)
        empty = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype),
                                       jax.eval_shape(position_part.arrays, first, handed(state)))
        carry = (state, (first, empty, jnp.array(False)))
        carry, outputs = jax.lax.scan(guarded(start, sample_len, num_samples, record_reusing, skip(record_reusing)),
                                      carry, jnp.arange(sample_len))
        return carry[0], outputs

    return warmup, draw


def _same_tree(a, b) -> jax.Array:
    """Whether two pytrees of arrays are equal, element for element (a scalar boolean)."""
    equal = [jnp.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))]
    return jnp.all(jnp.stack(equal)) if equal else jnp.array(True)


class _PositionPart:
    """``position(consts, z, evaluation)`` split into the array leaves a ``lax.cond`` carries from draw to
    draw, the leaves that are the evaluation's own arrays (the features, the Cholesky factor: the kernel
    carries them already, and an unmoved chain's evaluation is the previous draw's), and the rest
    (Python flags and sizes, fixed at trace time), which :meth:`rebuild` puts back."""

    def __init__(self, position, consts):
        self.position, self.consts = position, consts
        self.treedef, self.kinds = None, None

    def arrays(self, z, evaluation):
        cache = self.position(self.consts, z, evaluation)
        leaves, self.treedef = jax.tree_util.tree_flatten(cache)
        handed = {id(leaf): i for i, leaf in enumerate(jax.tree_util.tree_leaves(evaluation))}
        self.kinds = [("evaluation", handed[id(leaf)]) if id(leaf) in handed
                      else ("array", None) if isinstance(leaf, jax.Array) else ("static", leaf) for leaf in leaves]
        return [leaf for leaf, (kind, _) in zip(leaves, self.kinds) if kind == "array"]

    def rebuild(self, arrays, evaluation):
        carried, handed = iter(arrays), jax.tree_util.tree_leaves(evaluation)
        leaves = [next(carried) if kind == "array" else handed[value] if kind == "evaluation" else value
                  for kind, value in self.kinds]
        return jax.tree_util.tree_unflatten(self.treedef, leaves)


# ---------------------------------------------------------------------------
# Where chains run
# ---------------------------------------------------------------------------


@dataclass
class ChainLayout:
    """How :func:`run_chains` groups, batches, places and compiles chains (:func:`chain_layout` makes one).

    Attributes:
        groups: the chain indices of each group, run one group after another; the ``"parallel"``
            group is padded to a multiple of the device count with copies of the last chain.
        batched: whether a group has a leading chain axis (``vmap``) or is one unbatched chain.
        jit: ``(fn, in_axes) -> compiled fn`` over a group (``in_axes`` as for ``vmap``: None for
            arguments shared by every chain).
        place: ``(chain_tree, shared_tree) -> (chain_tree, shared_tree)`` on their devices (the
            chain axis split over the devices for ``"parallel"``, the shared trees replicated).
        num_devices: the devices a group runs on.
    """

    groups: list
    batched: bool
    jit: Callable
    place: Callable
    num_devices: int = 1

    def select(self, tree, idx):
        """The chains ``idx`` (one of :attr:`groups`) of a tree with a leading ``(num_chains,)`` axis."""
        if self.batched:
            return jax.tree_util.tree_map(lambda a: a[idx], tree)
        return jax.tree_util.tree_map(lambda a: a[int(idx[0])], tree)


def chain_layout(chain_method: str, num_chains: int) -> ChainLayout:
    """The layout of ``num_chains`` chains run by ``chain_method`` (see the module docstring):
    ``"sequential"``, one group per chain, unbatched; ``"vectorized"``, one batched group;
    ``"parallel"``, one batched group sharded over every local device, padded to a multiple of
    their number (3 chains on 2 devices: ``groups == [[0, 1, 2, 2]]``, two chains per device)."""
    if chain_method == "sequential":
        # One chain at a time, unbatched: NUTS under vmap evaluates both branches
        # of every lax.cond, which costs several times more even with a batch of one.
        return ChainLayout([np.array([c]) for c in range(num_chains)], False,
                       lambda fn, in_axes: jax.jit(fn), lambda chains, shared: (chains, shared))
    if chain_method == "vectorized":
        return ChainLayout([np.arange(num_chains)], True, lambda fn, in_axes: jax.jit(jax.vmap(fn, in_axes=in_axes)),
                       lambda chains, shared: (chains, shared))
    devices = jax.local_devices()
    mesh = Mesh(np.array(devices), ("chains",))
    by_chain, replicated = NamedSharding(mesh, PartitionSpec("chains")), NamedSharding(mesh, PartitionSpec())
    padded = -(-num_chains // len(devices)) * len(devices)

    def jit(fn, in_axes):
        shardings = tuple(replicated if axis is None else by_chain for axis in in_axes)
        return jax.jit(jax.vmap(fn, in_axes=in_axes), in_shardings=shardings, out_shardings=by_chain)

    def place(chains, shared):
        return jax.device_put(chains, by_chain), jax.device_put(shared, replicated)

    return ChainLayout([np.minimum(np.arange(padded), num_chains - 1)], True, jit, place, len(devices))


# ---------------------------------------------------------------------------
# The run's progress: what a checkpoint holds
# ---------------------------------------------------------------------------


class _Progress:
    """Outputs so far, per group and phase, and the position of the next chunk.

    ``snapshot`` is replaced (one assignment) after every chunk, so a save made
    at any moment, from a signal handler too, sees one chunk boundary.
    """

    KINDS = ("warm", "draws", "stats")

    def __init__(self, num_groups):
        self.parts = [{kind: [] for kind in self.KINDS} for _ in range(num_groups)]
        self.snapshot = None  # (position, state, counts, done, seconds)
        self.saved = None     # the snapshot last written

    def mark(self, position, state, done, seconds):
        counts = [{kind: len(p[kind]) for kind in self.KINDS} for p in self.parts]
        self.snapshot = (position, state, counts, done, dict(seconds))


def _fingerprint(rng_key, chain_method, num_chains, num_warmup, num_samples, thinning) -> dict:
    return {"rng_key": np.asarray(jax.random.key_data(rng_key)).tolist(), "batched": chain_method != "sequential",
            "num_chains": num_chains, "num_warmup": num_warmup, "num_samples": num_samples, "thinning": thinning,
            "warmup_chunk": _chunk_size(num_warmup), "sample_chunk": _chunk_size(num_samples)}


def _save(ckpt, fingerprint, progress: _Progress, layout: ChainLayout, num_chains: int) -> bool:
    """Write ``progress.snapshot`` (chains past ``num_chains``, padding, left out) unless already written."""
    snap = progress.snapshot
    if snap is None or snap is progress.saved:
        return False
    position, state, counts, done, seconds = snap
    axis = 1 if layout.batched else 0
    trees = {"state": _unpad(state, layout, num_chains)}
    for g, (part, count) in enumerate(zip(progress.parts, counts)):
        for kind in _Progress.KINDS:
            chunks = part[kind][:count[kind]]
            if chunks:
                trees[f"g{g}/{kind}"] = _unpad(_join(chunks, axis), layout, num_chains)
    meta = {"fingerprint": fingerprint, "position": list(position), "done": done, "seconds": seconds}
    ckpt.save(meta, trees)
    progress.saved = snap
    return True


def _unpad(tree, layout, num_chains):
    """The first ``num_chains`` chains of a batched tree (without the parallel layout's padding)."""
    if not layout.batched:
        return tree
    return jax.tree_util.tree_map(lambda a: a[:num_chains], tree)


def _repad(tree, layout):
    """A batched tree of ``num_chains`` chains padded again as the layout's group."""
    if not layout.batched:
        return tree
    idx = layout.groups[0]
    return jax.tree_util.tree_map(lambda a: a[idx], tree)


def _restore(ckpt, fingerprint, progress: _Progress, layout: ChainLayout, template_state, structures):
    """Load ``ckpt`` into ``progress``; return ``(position, state or None, done, seconds)``."""
    meta, trees = ckpt.load()
    if meta["fingerprint"] != fingerprint:
        diff = {k: (fingerprint[k], meta["fingerprint"].get(k)) for k in fingerprint
                if meta["fingerprint"].get(k) != fingerprint[k]}
        raise _ckpt.CheckpointMismatch(
            f"checkpoint {ckpt.path}: written by another run (setting: (expected, received) {diff}); "
            "remove it to start again")
    for name, (arrays, spec) in trees.items():
        if name == "state":
            continue
        group, kind = name.split("/")
        tree = _ckpt.unflatten_tree(arrays, spec, structures[kind], what=f"{ckpt.path} {name}")
        progress.parts[int(group[1:])][kind].append(_repad(tree, layout))
    state = _ckpt.unflatten_tree(*trees["state"], _unpad(template_state, layout, fingerprint["num_chains"]),
                                 what=f"{ckpt.path} state")
    position = tuple(meta["position"])
    state = _repad(state, layout)
    progress.mark(position, state, meta["done"], meta["seconds"])
    progress.saved = progress.snapshot
    at_group_start = position[1:] == (0, 0)  # the saved state is the previous group's last one
    return position, None if at_group_start else state, meta["done"], meta["seconds"]


def _join(chunks, axis: int):
    return jax.tree_util.tree_map(lambda *xs: np.concatenate(xs, axis=axis), *chunks)


def _concat(chunks, keep: int, axis: int):
    """Concatenate chunk outputs along the draw axis and cut to ``keep`` draws."""
    return jax.tree_util.tree_map(lambda a: np.take(a, np.arange(keep), axis=axis), _join(chunks, axis))


# ---------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------


@deferring  # Ctrl-C/SIGTERM stop between chunks, never inside XLA (reprior._util.interrupts)
def run_chains(kernel, stats_fn, collect_fn, init_params, *, rng_key, consts=(), num_warmup: int,
               num_samples: int, num_chains: int, thinning: int = 1, chain_method: str = "sequential",
               progress=None, checkpoint: _ckpt.Checkpoint | None = None, start: Start | None = None,
               with_evaluation: bool = False) -> ChainRun:
    """Warm up and sample ``num_chains`` chains of ``kernel``.

    Args:
        kernel: a NumPyro ``MCMCKernel`` built on a ``potential_fn``.
        stats_fn: ``state -> dict`` of per-iteration statistics, with
            ``num_grad_evals`` and ``num_logdensity_evals``.
        collect_fn: ``(consts, key, position) -> dict`` applied to each recorded draw.
        init_params: initial positions, each leaf with a leading ``(num_chains,)`` axis.
        consts: arrays passed to ``collect_fn`` (kept out of the compiled constants).
        chain_method: ``"sequential"``, ``"vectorized"`` or ``"parallel"`` (sharded over local devices).
        progress: optional ``callable(num_iterations_done, phase)``, phase ``"compiling"``
            (before compilation, with 0), ``"warmup"`` or ``"sampling"``, called between chunks.
        checkpoint: a :class:`reprior.inference.checkpoint.Checkpoint`, or None for the one set by
            :func:`reprior.inference.checkpoint.checkpointing` (if any).  If its file exists, the run
            continues from it; the file is kept when the run returns (the caller removes it
            with ``checkpoint.clear()`` once the results are stored).
        start: continue the chains of an earlier run from their final states (a :class:`Start`);
            ``init_params`` then only build the kernel, ``num_warmup`` must be 0, and with the
            earlier run's ``rng_key`` the draws are those one longer run records next.  A state
            of another structure raises :class:`reprior.inference.checkpoint.CheckpointMismatch`.
        with_evaluation: call ``collect_fn(consts, key, position, evaluation)``, with the
            density's evaluation at the recorded position that the kernel carries
            (:attr:`~reprior.inference.samplers.base.Density.evaluate_fn`; ``None`` for a kernel
            that carries none, such as NumPyro's), so that the draw need not recompute it.

    A ``collect_fn`` with ``parts`` (:class:`reprior.inference.sampling.CollectParts`) run by
    unbatched chains (``"sequential"``) reuses the position part of the previous draw when the
    chain has not moved (:func:`chain_functions`, ``reuse_position``): a rejected proposal then
    costs only the per-draw part of a recorded draw.
    """
    if chain_method not in CHAIN_METHODS:
        raise ValueError(f"argument `chain_method`: expected one of {CHAIN_METHODS}, received {chain_method!r}")
    if start is not None and num_warmup:
        raise ValueError(f"argument `num_warmup`: expected 0 when continuing chains, received {num_warmup!r}")
    ckpt = checkpoint if checkpoint is not None else _ckpt.current()
    traces: list[str] = []
    draw_offset = 0 if start is None else start.num_draws
    kernel_warmup = num_warmup if start is None else start.kernel_warmup
    layout = chain_layout(chain_method, num_chains)
    warmup_fn, draw_fn = chain_functions(kernel, stats_fn, collect_fn, num_warmup=num_warmup, num_samples=num_samples,
                                         thinning=thinning, warmup_chunk=_chunk_size(num_warmup),
                                         sample_chunk=_chunk_size(num_samples), draw_offset=draw_offset,
                                         with_evaluation=with_evaluation, trace_counter=traces,
                                         reuse_position=not layout.batched)
    init_key, collect_key = jax.random.split(rng_key)
    init_keys = jax.random.split(init_key, num_chains)
    collect_keys = jax.random.split(collect_key, num_chains)
    timings = {"compile_seconds": 0.0, "warmup_seconds": 0.0, "sample_seconds": 0.0}

    if progress:
        progress(0, "compiling")
    compile_begin = time.perf_counter()
    init_state, first_state = _initial_states(kernel, init_params, init_keys, consts, layout, kernel_warmup, start,
                                              num_chains)
    shared = layout.place((), consts)[1]
    compiled = _compile(layout, warmup_fn, draw_fn, first_state, shared, collect_keys, num_warmup)
    timings["compile_seconds"] = time.perf_counter() - compile_begin

    fingerprint = _fingerprint(rng_key, chain_method, num_chains, num_warmup, num_samples, thinning)
    if start is not None:
        fingerprint["draw_offset"] = draw_offset
    record = _Progress(len(layout.groups))
    position, resumed_state, done, seconds = (0, 0, 0), None, 0, {}
    if ckpt is not None and ckpt.exists():
        position, resumed_state, done, seconds = _restore(ckpt, fingerprint, record, layout, first_state,
                                                          _output_structures(compiled))
    num_resumed = done
    for name, value in seconds.items():
        timings[name] += value
    save = (lambda: _save(ckpt, fingerprint, record, layout, num_chains)) if ckpt is not None else (lambda: False)

    phases = [("warmup", compiled["warmup"], _num_chunks(num_warmup), _chunk_size(num_warmup), num_warmup),
              ("sampling", compiled["draw"], _num_chunks(num_samples), _chunk_size(num_samples), num_samples)]

    def group_state(g):  # a group's state when its turn comes
        if g == position[0] and resumed_state is not None:
            return resumed_state
        return first_state if g == 0 else init_state(layout.groups[g])

    with _ckpt.active(save):
        try:
            finals = _run_groups(layout, phases, shared, collect_keys, group_state, position, done, record, timings,
                                 num_chains, ckpt, save, progress)
        except KeyboardInterrupt:  # Ctrl-C, SIGTERM (reprior._util.interrupts): keep the last chunk boundary
            save()
            raise
    run = _assemble(record, layout, num_chains, num_warmup, num_samples, timings, len(traces), num_resumed)
    if len(finals) == len(layout.groups):
        run.final_state = _final_state([finals[g] for g in range(len(layout.groups))], layout, num_chains)
    return run


_SECONDS = {"warmup": "warmup_seconds", "sampling": "sample_seconds"}


def _initial_states(kernel, init_params, init_keys, consts, layout: ChainLayout, kernel_warmup: int,
                    start: Start | None, num_chains: int):
    """``(init_state, first_state)``: the function from a group's chain indices to its initial state (placed
    by ``layout``), and the first group's state.  With ``start``, the states are the earlier run's."""

    def init_state(idx):
        params, keys = layout.select(init_params, idx), layout.select(init_keys, idx)
        init = lambda k, p: kernel.init(k, kernel_warmup, p, (), {})  # noqa: E731
        state = jax.vmap(init)(keys, params) if layout.batched else init(keys, params)
        return layout.place(state, consts)[0]

    first_state = init_state(layout.groups[0])  # builds the kernel (NumPyro's keeps its schedule in closures)
    if start is None:
        return init_state, first_state
    start_states = _start_states(start, first_state, layout, num_chains)  # every chain starts from these instead

    def start_state(idx):
        return layout.place(layout.select(start_states, idx), ())[0]

    return start_state, start_state(layout.groups[0])


def _compile(layout: ChainLayout, warmup_fn, draw_fn, first_state, shared, collect_keys, num_warmup: int) -> dict:
    """The chunk functions compiled for the first group: ``{"warmup": ..., "draw": ...}`` (no warm-up
    executable without warm-up)."""
    warmup = layout.jit(warmup_fn, (0, None)).lower(first_state, 0).compile() if num_warmup else None
    keys = layout.place(layout.select(collect_keys, layout.groups[0]), ())[0]
    return {"warmup": warmup, "draw": layout.jit(draw_fn, (0, None, 0, None)).lower(first_state, shared, keys,
                                                                                    0).compile()}


def _run_groups(layout: ChainLayout, phases, shared, collect_keys, group_state, position, done: int,
                record: _Progress, timings: dict, num_chains: int, ckpt, save, progress) -> dict:
    """Run every chunk of every group and phase from ``position`` (a checkpoint's, or the start) on,
    recording each in ``record``, saving when ``ckpt`` is due and adding the phases' seconds to ``timings``.

    Returns ``{group: its last state}`` (groups finished before a checkpoint have none here).
    """
    finals = {}
    for g in range(position[0], len(layout.groups)):
        idx = layout.groups[g]
        state = group_state(g)
        keys = layout.place(layout.select(collect_keys, idx), ())[0]
        for p, (phase, fn, num, length, total) in enumerate(phases):
            if (g, p) < position[:2]:  # done before the checkpoint
                continue
            begin = time.perf_counter()
            for c in range(position[2] if (g, p) == position[:2] else 0, num):
                state = _run_chunk(phase, fn, state, shared, keys, c * length, record.parts[g])
                done += min(length, total - c * length) * min(len(idx), num_chains)
                seconds = {**timings, _SECONDS[phase]: timings[_SECONDS[phase]] + time.perf_counter() - begin}
                record.mark(_next_position(g, p, c, num, len(layout.groups), phases), state, done,
                            {k: seconds[k] for k in _SECONDS.values()})
                if ckpt is not None and ckpt.due():
                    save()
                if progress:
                    progress(done, phase)
            jax.block_until_ready(state)
            timings[_SECONDS[phase]] += time.perf_counter() - begin
        finals[g] = state
    return finals


def _start_states(start: Start, first_state, layout: ChainLayout, num_chains: int):
    """The states of ``start`` as a tree like the run's own (checked against ``first_state``),
    with a leading ``(num_chains,)`` axis."""
    template = _unpad(first_state, layout, num_chains) if layout.batched else jax.tree_util.tree_map(
        lambda a: jnp.asarray(a)[None], first_state)
    states = _ckpt.unflatten_tree(start.arrays, start.spec, template, what="start state", batch_ndim=1)
    sizes = {int(np.shape(a)[0]) for a in jax.tree_util.tree_leaves(states)}
    if sizes != {num_chains}:
        raise _ckpt.CheckpointMismatch(f"start state: expected {num_chains} chains, received {sorted(sizes)}")
    return states


def _final_state(states, layout: ChainLayout, num_chains: int):
    """The last states of every group as one tree with a leading ``(num_chains,)`` axis."""
    if layout.batched:
        return jax.tree_util.tree_map(lambda a: a[:num_chains], states[0])
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *states)


def _run_chunk(phase, fn, state, shared, keys, start, part):
    """Run one compiled chunk from iteration ``start``; append its outputs (on the host) to ``part``."""
    if phase == "warmup":
        state, stats = fn(state, start)
        part["warm"].append(jax.device_get(stats))
    else:
        state, (out, stats) = fn(state, shared, keys, start)
        part["draws"].append(jax.device_get(out))
        part["stats"].append(jax.device_get(stats))
    return state


def _next_position(g, p, c, num, num_groups, phases):
    """The position ``(group, phase, chunk)`` after chunk ``c`` of phase ``p`` of group ``g``."""
    if c + 1 < num:
        return (g, p, c + 1)
    for q in range(p + 1, len(phases)):
        if phases[q][2]:
            return (g, q, 0)
    return (g + 1, 0, 0)


def _output_structures(compiled) -> dict:
    """The tree structures of a chunk's outputs: ``{"warm", "draws", "stats"}``."""

    def sub(executable):
        tree = executable.out_tree
        return jax.tree_util.tree_unflatten(tree, range(tree.num_leaves))

    structures = {}
    if compiled["warmup"] is not None:
        structures["warm"] = jax.tree_util.tree_structure(sub(compiled["warmup"])[1])
    _, (out, stats) = sub(compiled["draw"])
    structures["draws"] = jax.tree_util.tree_structure(out)
    structures["stats"] = jax.tree_util.tree_structure(stats)
    return structures


def _assemble(record, layout, num_chains, num_warmup, num_samples, timings, num_traces, num_resumed) -> ChainRun:
    axis = 1 if layout.batched else 0
    draws, stats, warm = [], [], []
    for part in record.parts:
        pieces = [_concat(part["draws"], num_samples, axis), _concat(part["stats"], num_samples, axis)]
        if part["warm"]:
            pieces.append(_concat(part["warm"], num_warmup, axis))
        if not layout.batched:  # add the chain axis of a single unbatched chain
            pieces = [jax.tree_util.tree_map(lambda a: a[None], piece) for piece in pieces]
        pieces = [jax.tree_util.tree_map(lambda a: a[:num_chains], piece) for piece in pieces]
        draws.append(pieces[0])
        stats.append(pieces[1])
        if part["warm"]:
            warm.append(pieces[2])

    def stack(parts):
        return jax.tree_util.tree_map(lambda *xs: np.concatenate(xs, axis=0), *parts)

    return ChainRun(draws=stack(draws), stats=stack(stats), warmup_stats=stack(warm) if warm else {},
                    timings=timings, num_traces=num_traces, num_resumed=num_resumed)
