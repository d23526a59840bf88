"""Iteration-based DeepLabV3 training: poly LR, multi-device / distributed, resumable.

:func:`train` settles the devices and the folder lock; ``_prepare_run`` builds a :class:`Run`
(model, optimizer, data, log, :class:`RunState`); ``_train_loop`` runs the iterations with
validation and checkpoints; ``_finish`` writes the final checkpoint and the result.
"""

from __future__ import annotations

import functools
import os
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import mxnet as mx
import numpy as np
from tqdm import tqdm

from ..checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from ..class_names import CLASSES
from ..data import make_dataloader
from ..devices import resolve_contexts
from ..evaluation import evaluate
from ..files import atomic_write
from ..models import load_model_weights
from .config import TrainConfig, as_config
from .errors import SettingsError, TrainingDiverged, TrainingError
from .lock import FolderLock
from .loss import SegmentationLoss
from .mixed_precision import describe_amp, init_amp, init_amp_trainer
from .monitor import RunLog, open_run_log, plot_curves
from .multi_device import warn_few_images_batchnorm
from .optim import make_trainer
from .progress import LossWindow, check_loss_scale, log_window
from .run_folder import BEST, FINAL, RUN_ID, checkpoint_path, prune_checkpoints, run_id_of
from .run_setup import (
    LOG_FILE,
    Console,
    Distributed,
    RunPlan,
    build_net,
    clean_folder,
    datasets_of,
    find_start,
    iterations_for_epochs,
    loader_workers,
    max_iterations,
    plan_devices,
    pretrained_weights,
)
from .schedule import poly_lr
from .step import RunningStatsSync, forward_backward, nonfinite_parameters, seed_devices
from .trainer_state import ready_trainer, restore_trainer_states, trainer_states

CURVES_FILE = "curves.png"
__all__ = ["TrainingDiverged", "TrainingError", "iterations_for_epochs", "step_seed", "train"]


def step_seed(seed: int, iteration: int, rank: int = 0) -> int:
    """The random seed of one step (dropout): a function of (seed, iteration, worker) only,
    so a resumed run draws the same dropout masks as an uninterrupted one."""
    return (seed * 1_000_003 + iteration * 7919 + rank * 104_729) % (2 ** 31 - 1)


def train(settings: Union[TrainConfig, Mapping[str, Any]]) -> Dict[str, Any]:
    """Train DeepLabV3 as ``settings`` say (a :class:`TrainConfig`, or a dict of its fields:
    the ``gluon-deeplab-train`` flags; unknown names are an error).

    Returns ``checkpoint`` (final checkpoint path), ``best_miou``, ``iteration`` and
    ``output_dir`` (plus ``last_loss``). Raises :class:`TrainingError` for a run that cannot
    start (existing run without --resume, a checkpoint of another run, a folder in use by
    another trainer) and :class:`TrainingDiverged` on a NaN/inf loss or weights.
    """
    try:  # every check of the settings, once, before anything starts
        asked = as_config(settings)  # a checked copy: the caller's settings stay as they are
        ctxs = resolve_contexts(asked.gpus, asked.cpu_devices)
        plan = RunPlan(plan_devices(asked, ctxs), asked.data_plan(), asked)
        args = plan.config()  # what the run uses and its checkpoints record
        amp_dtype = init_amp(ctxs) if args.amp else None  # before the model is built
    except SettingsError:
        raise
    except ValueError as err:
        raise SettingsError(str(err)) from None
    dist = Distributed(args.kvstore)
    if not dist.chief:  # only the chief writes to the output folder
        return _train(args, ctxs, dist, amp_dtype, plan)
    os.makedirs(args.output_dir, exist_ok=True)
    with FolderLock(args.output_dir):
        return _train(args, ctxs, dist, amp_dtype, plan)


@dataclass
class RunState:
    """Where a run stands: what a checkpoint records and a resumed run continues from."""

    iteration: int = 0
    best_miou: Optional[float] = None
    last_good: Optional[str] = None  # the newest checkpoint with finite weights
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)  # names the run's files
    last_loss: Union[float, mx.nd.NDArray] = float("nan")


@dataclass
class Run:
    """One training run's pieces and the actions on them (validate, save, check weights)."""

    args: TrainConfig
    ctxs: Sequence[mx.Context]
    dist: Distributed
    amp_dtype: Optional[str]
    say: Console
    net: Any
    trainer: mx.gluon.Trainer
    loss_fn: SegmentationLoss
    sync_running_stats: RunningStatsSync
    log: RunLog
    train_set: Any
    val_set: Any
    max_iter: int
    resume_path: Optional[str]
    state: RunState
    run_args: Dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.run_args = dict(self.args.as_dict(), max_iter=self.max_iter)

    def check_weights(self, iteration: int) -> None:
        """Stop before diverged weights are validated or saved."""
        bad = nonfinite_parameters(self.net)
        if bad:
            total = len(self.net._collect_params_with_prefix())
            raise TrainingDiverged(
                f"{len(bad)} of {total} parameter arrays are not finite at iteration "
                f"{iteration} (e.g. {bad[0]}): training stopped; the diverged weights were not "
                f"saved (last good checkpoint: {self.state.last_good or 'none'}); lower "
                "--initial_learning_rate and resume")

    def save(self, path: str, iteration: int) -> str:
        """Write a checkpoint of the weights, optimizer and state at ``iteration``."""
        self.check_weights(iteration)
        return save_checkpoint(path, self.net, iteration,
                               trainer_states(self.trainer, self.net), self.run_args,
                               self.state.best_miou,
                               extra={"num_workers": self.dist.num_workers,
                                      CLASSES: list(self.train_set.classes),
                                      RUN_ID: self.state.run_id})

    def validate(self, iteration: int) -> None:
        """Log the validation metrics; save best.params when the mIoU improved."""
        self.check_weights(iteration)
        metrics, _ = evaluate(self.net, self.val_set, self.ctxs, progress=False)
        self.log.write({"kind": "val", "iteration": iteration, **metrics})
        best = self.state.best_miou
        improved = best is None or metrics["miou"] > best
        if improved:
            self.state.best_miou = metrics["miou"]
            self.save(os.path.join(self.args.output_dir, BEST), iteration)
        self.say(f"iteration {iteration}: val mIoU {metrics['miou']:.4f} "
                 f"pixel acc {metrics['pixel_accuracy']:.4f}"
                 f"{' (best)' if improved else f' (best {self.state.best_miou:.4f})'}")

    def plot(self) -> None:
        plot_curves(self.log.read(), os.path.join(self.args.output_dir, CURVES_FILE))


def _train(args: TrainConfig, ctxs: Sequence[mx.Context], dist: Distributed,
           amp_dtype: Optional[str], plan: RunPlan) -> Dict[str, Any]:
    run = _prepare_run(args, ctxs, dist, amp_dtype, plan, Console(dist.chief))
    trained = run.state.iteration < run.max_iter
    if not trained:
        run.say(f"{run.resume_path} is at iteration {run.state.iteration} >= --max_iter "
                f"{run.max_iter}: nothing to do")
    else:
        _train_loop(run)
    return _finish(run, trained)


def _prepare_run(args: TrainConfig, ctxs: Sequence[mx.Context], dist: Distributed,
                 amp_dtype: Optional[str], plan: RunPlan, say: Console) -> Run:
    """Everything before the first iteration, in the order a user fixes problems: the run
    folder, the data, then the starting weights, the model, the optimizer and the log."""
    read = functools.lru_cache(maxsize=2)(load_checkpoint)  # each file read and checked once
    resume_path = find_start(args, say, read)
    for note in plan.devices.notes:
        say(note)
    if amp_dtype and dist.chief:  # one bf16 probe per machine, not one per worker at once
        say(describe_amp(amp_dtype, ctxs))
    if dist.chief:
        clean_folder(args.output_dir, say)
    # The data first: a missing dataset is the first thing to fix, before any download.
    train_set, val_set = datasets_of(args, plan.data.defaults_used)
    pretrained = pretrained_weights(args, resume_path, say)  # fails early when unavailable
    max_iter = max_iterations(args, len(train_set), dist.num_workers, say)
    mx.random.seed(args.seed)  # initialization of the head (and a backbone not pretrained)
    np.random.seed(args.seed)
    if dist.chief:
        warn_few_images_batchnorm(args.batch_size, len(ctxs), bool(args.freeze_batch_norm),
                                  args.syncbn)
    source = resume_path or args.init_checkpoint
    ckpt = read(source) if source else None
    net = build_net(args, ctxs, train_set.num_classes, pretrained, ckpt)
    state, optimizer_states = _start_state(net, ckpt, args, resume_path, say)
    if args.hybridize:
        net.hybridize()
    trainer = make_trainer(net, args.initial_learning_rate, args.weight_decay,
                           args.head_lr_mult, dist.kvstore)
    if amp_dtype:
        init_amp_trainer(trainer)
    ready_trainer(trainer)  # before the first forward: every worker starts from rank 0's weights
    if optimizer_states:
        restore_trainer_states(trainer, optimizer_states, net)
    sync_running_stats = RunningStatsSync(
        net, dist.kvstore if dist.num_workers > 1 else None, dist.num_workers)
    loss_fn = SegmentationLoss(train_set.ignore_label, args.aux_weight if args.aux else 0.0)
    log = open_run_log(args.output_dir, LOG_FILE, args.tensorboard and dist.chief, net, val_set)
    if dist.chief:
        if resume_path:
            log.truncate_after(state.iteration)
        log.write({"kind": "start", "iteration": state.iteration, "max_iter": max_iter,
                   RUN_ID: state.run_id, "contexts": [str(c) for c in ctxs],
                   "workers": dist.num_workers, "args": args.as_dict(),
                   "asked": plan.asked.as_dict(), "decided": plan.decided()})
    return Run(args, ctxs, dist, amp_dtype, say, net, trainer, loss_fn, sync_running_stats,
               log, train_set, val_set, max_iter, resume_path, state)


def _start_state(net, ckpt: Optional[Checkpoint], args: TrainConfig,
                 resume_path: Optional[str], say: Console) -> Tuple[RunState, Any]:
    """Load the starting checkpoint's weights into ``net``; the run's state and the optimizer
    states to restore (a resumed run continues; --init_checkpoint starts at 0)."""
    state = RunState(last_good=resume_path)
    if resume_path:
        load_model_weights(net, ckpt, resume_path)
        state.iteration, state.best_miou = ckpt.iteration, ckpt.best_miou
        state.run_id = run_id_of(ckpt) or state.run_id
        say(f"resuming from {resume_path} at iteration {state.iteration}")
        return state, ckpt.optimizer_states
    if ckpt is not None:
        load_model_weights(net, ckpt, args.init_checkpoint)
        say(f"initialized from {args.init_checkpoint} (weights only; schedule starts at 0)")
    return state, None


def _train_loop(run: Run) -> None:
    """The iterations from ``run.state.iteration`` to ``run.max_iter``, with the loss log,
    validation and periodic checkpoints."""
    args, dist, state = run.args, run.dist, run.state
    start, max_iter = state.iteration, run.max_iter
    loader = make_dataloader(run.train_set, args.batch_size,
                             num_workers=loader_workers(args, len(run.ctxs), run.say),
                             seed=args.seed, start_iteration=start,
                             num_iterations=max_iter - start,
                             shard=(dist.rank, dist.num_workers))
    bar = run.say.bar = tqdm(total=max_iter, initial=start, desc="train", unit="it",
                             disable=not dist.chief or not args.progress, dynamic_ncols=True)
    window = LossWindow()
    scaler = getattr(run.trainer, "_amp_loss_scaler", None)
    try:
        for iteration, (images, labels) in enumerate(loader, start=start):
            lr = poly_lr(iteration, max_iter, args.initial_learning_rate,
                         args.end_learning_rate)
            loss = _train_step(run, iteration, lr, images, labels)
            done = iteration + 1
            if scaler is not None and scaler.last_skipped:
                window.skipped += 1  # AMP overflow (loss or gradients): no update
                check_loss_scale(scaler, done, state.last_good)
            else:
                state.last_loss = loss
                window.add(done, loss)
            bar.update(1)
            if done % args.log_interval == 0 or done == max_iter:
                log_window(window, done, lr, scaler, run.log if dist.chief else None,
                           bar, state.last_good)
            _validate_and_save(run, done)
    finally:
        bar.close()
        run.say.bar = None
    state.iteration = max_iter


def _train_step(run: Run, iteration: int, lr: float, images, labels) -> mx.nd.NDArray:
    """One optimizer step at learning rate ``lr``; the batch's loss (on the device)."""
    run.trainer.set_learning_rate(lr)
    seed_devices(step_seed(run.args.seed, iteration, run.dist.rank), run.ctxs)
    loss = forward_backward(run.net, run.loss_fn, images,
                            labels, run.ctxs,
                            amp_trainer=run.trainer if run.amp_dtype else None)
    run.trainer.step(run.dist.num_workers)
    return loss


def _validate_and_save(run: Run, done: int) -> None:
    """Validation and the periodic checkpoint after ``done`` iterations, where they are due
    (the chief writes them; every worker syncs the BN statistics first)."""
    args, out = run.args, run.args.output_dir
    validating = run.val_set is not None and (
        done % args.val_interval == 0 or done == run.max_iter)
    saving = done % args.checkpoint_interval == 0 and done < run.max_iter
    if validating or saving:
        run.sync_running_stats()  # collective: every worker, same iterations
    if not run.dist.chief:
        return
    if validating:
        run.validate(done)
        run.plot()
    if saving:
        run.state.last_good = run.save(checkpoint_path(out, done), done)
        prune_checkpoints(out, args.keep_checkpoints)
        run.plot()


def _finish(run: Run, trained: bool) -> Dict[str, Any]:
    """The final checkpoint (and each worker's weights in a distributed run); the result."""
    out, dist, state = run.args.output_dir, run.dist, run.state
    final = os.path.join(out, FINAL)
    if trained:
        run.sync_running_stats()
    if dist.chief:
        if trained or run.resume_path != final:
            run.save(final, state.iteration)
        run.plot()
        run.say(f"done: {state.iteration} iterations, final checkpoint {final}"
                + (f", best val mIoU {state.best_miou:.4f}" if state.best_miou is not None
                   else ""))
    if dist.num_workers > 1:
        # Every worker's weights, to check that the workers stayed in lock step.
        run.check_weights(state.iteration)
        atomic_write(os.path.join(out, f"final-rank{dist.rank}.params"), run.net.save_parameters)
    last_loss = state.last_loss
    if isinstance(last_loss, mx.nd.NDArray):
        last_loss = float(last_loss.asscalar())
    return {"checkpoint": final, "best_miou": state.best_miou, "iteration": state.iteration,
            "output_dir": out, "last_loss": last_loss, "max_iter": run.max_iter}
