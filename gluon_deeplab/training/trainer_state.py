"""A Gluon ``Trainer``'s optimizer state as the checkpoint stores it (named arrays and a JSON
record, no pickle), and back: what resuming needs from the trainer's internals."""

from __future__ import annotations

from typing import Any, Dict, List

import mxnet as mx

from ..checkpoint import OPTIMIZER_STATE_FORMAT, OptimizerState


def ready_trainer(trainer: mx.gluon.Trainer) -> None:
    """Create the trainer's kvstore and updaters, and give every device (and every worker of
    a distributed run) the first one's weights, now; a collective call under a distributed
    kvstore.

    Gluon does this lazily inside the first ``step``, after that step's backward is queued.
    With a distributed kvstore the pull of the starting weights is then in flight together
    with the first gradients of the same keys, and a worker's pull can reach the server after
    those gradients were summed: that worker takes the sum as its weights and the workers
    part (seen on a loaded 2-core machine in about one launch in five).
    """
    if not trainer._kv_initialized:
        trainer._init_kvstore()
    if trainer._params_to_init:
        trainer._init_params()
        mx.nd.waitall()
    if trainer._update_on_kvstore:
        raise ValueError("the optimizer state lives on the kvstore (update_on_kvstore=True) and "
                         "cannot be saved as arrays; build the trainer with "
                         "update_on_kvstore=False (as make_trainer does)")


def _structural_names(trainer: mx.gluon.Trainer, net: mx.gluon.Block) -> List[str]:
    by_id = {id(p): name for name, p in net._collect_params_with_prefix().items()}
    names = [by_id.get(id(p)) for p in trainer._params]
    if None in names:
        raise ValueError("the trainer updates parameters that are not in the network")
    return names


def trainer_states(trainer: mx.gluon.Trainer, net: mx.gluon.Block) -> OptimizerState:
    """The optimizer state of a Gluon trainer over ``net`` as named arrays + JSON.

    The state of the first device's updater is taken: with synchronous data parallelism every
    device applies the same update, so their states are equal (as ``Trainer.save_states``).
    """
    ready_trainer(trainer)
    names = _structural_names(trainer, net)
    optimizer = trainer._optimizer
    states = trainer._updaters[0].states
    arrays: Dict[str, mx.nd.NDArray] = {}
    layout: Dict[str, Any] = {}
    for i, name in enumerate(names):
        if i not in states:
            continue  # never updated yet
        state = states[i]
        if state is None or isinstance(state, mx.nd.NDArray):
            layout[name] = None if state is None else "array"
            if state is not None:
                arrays[name] = state.as_in_context(mx.cpu())
        elif isinstance(state, (tuple, list)) and all(
                s is None or isinstance(s, mx.nd.NDArray) for s in state):
            layout[name] = [None if s is None else "array" for s in state]
            for k, s in enumerate(state):
                if s is not None:
                    arrays[f"{name}#{k}"] = s.as_in_context(mx.cpu())
        else:
            raise ValueError(f"optimizer {type(optimizer).__name__}: state of {name} is a "
                             f"{type(state).__name__}, which cannot be stored as arrays")
    counts = optimizer._all_index_update_counts.get(trainer._contexts[0].device_id, {})
    record = {"format": OPTIMIZER_STATE_FORMAT, "optimizer": type(optimizer).__name__.lower(),
              "num_update": int(optimizer.num_update),
              "update_counts": {names[i]: int(c) for i, c in counts.items()
                                if isinstance(i, int) and i < len(names)},
              "layout": layout}
    return OptimizerState(record, arrays)


def restore_trainer_states(trainer: mx.gluon.Trainer, states: OptimizerState,
                           net: mx.gluon.Block) -> None:
    """Inverse of :func:`trainer_states`: load the state into every device's updater.

    A one-line ValueError (naming the checkpoint) for the old pickled state, another optimizer,
    or parameters that do not match.
    """
    source = states.source
    if states.legacy_pickle:
        raise ValueError(
            f"{source} stores its optimizer state as a pickle (written by an older gluon-deeplab), "
            "which is not loaded because unpickling a file can run code; continue from its "
            f"weights with --init_checkpoint {source} instead of --resume (the learning-rate "
            "schedule and momentum start afresh)")
    record = states.record
    if record.get("format") != OPTIMIZER_STATE_FORMAT:
        raise ValueError(f"{source}: unsupported optimizer state format "
                         f"{record.get('format')!r}, expected {OPTIMIZER_STATE_FORMAT!r}")
    ready_trainer(trainer)
    optimizer = trainer._optimizer
    kind = type(optimizer).__name__.lower()
    if record.get("optimizer") != kind:
        raise ValueError(f"{source} holds the state of optimizer {record.get('optimizer')!r}, "
                         f"the trainer uses {kind!r}")
    names = _structural_names(trainer, net)
    index = {name: i for i, name in enumerate(names)}
    layout = record.get("layout", {})
    unknown = sorted(set(layout) - set(index))
    if unknown:
        raise ValueError(f"{source}: optimizer state for parameters the trainer does not "
                         f"update: {', '.join(unknown[:5])}")

    def array(key: str, i: int) -> mx.nd.NDArray:
        if key not in states.arrays:
            raise ValueError(f"{source}: optimizer state array {key} is missing")
        value = states.arrays[key]
        shape = trainer._params[i].shape
        if tuple(value.shape) != tuple(shape):
            raise ValueError(f"{source}: optimizer state {key} has shape {value.shape}, the "
                             f"parameter has {tuple(shape)}")
        return value.copy()  # each device's updater owns its state

    for updater in trainer._updaters:
        restored: Dict[int, Any] = {}
        for name, spec in layout.items():
            i = index[name]
            if spec is None:
                restored[i] = None
            elif spec == "array":
                restored[i] = array(name, i)
            else:
                restored[i] = tuple(None if s is None else array(f"{name}#{k}", i)
                                    for k, s in enumerate(spec))
        updater.states = restored
        updater.states_synced = dict.fromkeys(restored, False)  # moved to its device on use
    optimizer.num_update = int(record.get("num_update", 0))
    counts = {index[n]: int(c) for n, c in record.get("update_counts", {}).items() if n in index}
    # The optimizer counts per device (its updater switches to the device's own dict before
    # each update): a count set only on the current dict was dropped at the next update.
    devices = [ctx.device_id for ctx in trainer._contexts]
    optimizer._all_index_update_counts = {d: dict(counts) for d in devices}
    optimizer._index_update_count = optimizer._all_index_update_counts[devices[0]]
