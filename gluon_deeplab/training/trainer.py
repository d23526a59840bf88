"""Iteration-based DeepLabV3 training: poly LR, multi-device / distributed, resumable."""

from __future__ import annotations

import math
import os
import uuid
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import mxnet as mx
import numpy as np
from tqdm import tqdm

from ..checkpoint import (
    Checkpoint,
    atomic_write,
    load_checkpoint,
    load_model_weights,
    restore_trainer_states,
    save_checkpoint,
)
from ..data import (
    DataError,
    default_num_workers,
    explain_data_error,
    make_dataloader,
    train_val_datasets,
)
from ..devices import resolve_contexts
from ..evaluation import evaluate
from ..models import (
    build_model,
    canonical_head_name,
    default_pretrained,
    recorded_head_settings,
    resolve_pretrained,
)
from .config import TrainConfig, as_config
from .errors import TrainingDiverged, TrainingError
from .lock import FolderLock
from .loss import SegmentationLoss
from .mixed_precision import describe_amp, init_amp, init_amp_trainer
from .monitor import open_run_log, plot_curves
from .multi_device import (
    check_devices,
    choose_kvstore,
    distributed_worker,
    nccl_available,
    warn_few_images_batchnorm,
)
from .optim import make_trainer
from .progress import LossWindow, check_loss_scale, log_window
from .run_folder import (
    BEST,
    FINAL,
    RUN_ID,
    checkpoint_path,
    latest_checkpoint,
    prune_checkpoints,
    remove_stale_temporaries,
    run_files,
    run_id_of,
    same_run,
)
from .schedule import poly_lr
from .step import RunningStatsSync, forward_backward, nonfinite_parameters, seed_devices

LOG_FILE, CURVES_FILE = "log.jsonl", "curves.png"


def step_seed(seed: int, iteration: int, rank: int = 0) -> int:
    """The random seed of one step (dropout): a function of (seed, iteration, worker) only,
    so a resumed run draws the same dropout masks as an uninterrupted one."""
    return (seed * 1_000_003 + iteration * 7919 + rank * 104_729) % (2 ** 31 - 1)


class _Distributed:
    """This process's place in a run: kvstore, rank and number of workers."""

    def __init__(self, kvstore: str):
        self.kvstore: Union[str, mx.kv.KVStore] = kvstore
        self.rank, self.num_workers = 0, 1
        if "dist" in kvstore:
            self.kvstore = mx.kv.create(kvstore)
            self.rank, self.num_workers = self.kvstore.rank, self.kvstore.num_workers

    @property
    def chief(self) -> bool:
        return self.rank == 0


def _find_start(args: TrainConfig, say) -> Optional[str]:
    """The checkpoint to resume from (None: fresh start); refuses to overwrite a run: a fresh
    start in a folder that holds one, or a checkpoint of another run resumed into it."""
    out = args.output_dir
    existing = run_files(out)
    names = ", ".join(os.path.basename(p) for p in existing[:3])
    names += ", ..." if len(existing) > 3 else ""
    if args.resume == "auto":
        path = latest_checkpoint(out)
        if path is None:
            say(f"--resume auto: no checkpoint in {out}, starting a fresh run")
        return path
    if args.resume:
        path = args.resume
        if os.path.isdir(path):  # a run folder: where it stopped, as --resume auto would
            path = latest_checkpoint(path)
            if path is None:
                raise FileNotFoundError(f"--resume {args.resume}: the folder holds no "
                                        "checkpoint-*.params or final.params to continue from")
            say(f"--resume {args.resume} is a run folder: continuing from {path}")
        elif not os.path.isfile(path):
            raise FileNotFoundError(f"--resume {path}: no such checkpoint file or run folder")
        if not same_run(path, out):
            raise TrainingError(
                f"--resume {path} is a checkpoint of another run than the one in {out} "
                f"({names}); resume it into its own folder or into an empty --output_dir "
                "(nothing was overwritten)")
        return path
    if existing:
        raise TrainingError(
            f"{out} already holds a run ({names}); pass --resume auto to continue it or "
            "choose another --output_dir (nothing was overwritten)")
    return None


def _clean_folder(out: str, say) -> None:
    """Remove what a killed trainer left that no run can use: temporary files of interrupted
    writes, and a log whose run never saved a checkpoint (a fresh start owns the folder)."""
    for path in remove_stale_temporaries(out):
        say(f"removed {path} (left by an interrupted write)")
    log_path = os.path.join(out, LOG_FILE)
    if not run_files(out) and os.path.isfile(log_path):
        os.remove(log_path)
        say(f"replaced {log_path}: it was left by a run that saved no checkpoint")


def _datasets(args: TrainConfig):
    """The training and validation sets; an error names the defaults it came from."""
    defaults = args.fill_data_defaults()
    try:
        return train_val_datasets(
            args.dataset, args.data_dir, args.train_split,
            args.val_split if args.val_interval > 0 else None, val_dataset=args.val_dataset,
            val_data_dir=args.val_data_dir, crop_size=args.crop_size,
            num_classes=args.num_classes, ignore_label=args.ignore_label,
            folder_options=args.folder_options())
    except DataError as err:
        raise explain_data_error(err, "train.py", defaults, args.dataset,
                                 args.data_dir) from None


def _pretrained_weights(args: TrainConfig, resume_path: Optional[str],
                        say) -> Optional[str]:
    """The backbone file to start from (None: random, or weights come from a checkpoint)."""
    if resume_path or args.init_checkpoint:
        return None
    spec = args.pre_trained_model or default_pretrained(args.dataset)
    path = resolve_pretrained(spec, args.base_architecture)
    say(f"backbone weights: {path}" if path
        else "backbone weights: random (--pre_trained_model none)")
    return path


def _head_settings_of(ckpt: Optional[Checkpoint], args: TrainConfig) -> Dict[str, Any]:
    """The head settings of the model a run starts from (none: the output stride's defaults).

    A resumed run keeps what it was built with (a Vortex run from before the kernels scaled
    with the output stride stays 3/9/27); phase 2 from a phase-1 checkpoint moves default
    settings to its own stride. A checkpoint of the other head keeps the defaults, and its
    weights are then refused by name when they are loaded.
    """
    if ckpt is None:
        return {}
    if canonical_head_name(ckpt.model_config.get("head", "aspp")) != \
            canonical_head_name(args.aspp_or_vortex):
        return {}
    return recorded_head_settings(ckpt.model_config, args.output_stride)


def iterations_for_epochs(epochs: float, num_samples: int, batch_size: int,
                          num_workers: int = 1) -> int:
    """Optimizer steps that show every training sample ``epochs`` times."""
    return max(1, math.ceil(epochs * num_samples / (batch_size * num_workers)))


def _loader_workers(args: TrainConfig, num_devices: int, say) -> int:
    """--num_workers, or by default 4 per device (at most the CPU count), said once."""
    if args.num_workers is not None:
        return args.num_workers
    count = default_num_workers(num_devices)
    say(f"data loading: {count} worker processes (4 per device, at most the CPU count; "
        "--num_workers sets it)")
    return count


def _metrics_record(metrics: Dict[str, Any], iteration: int) -> Dict[str, Any]:
    return {"kind": "val", "iteration": iteration, **metrics}


def train(settings: Union[TrainConfig, Mapping[str, Any]]) -> Dict[str, Any]:
    """Train DeepLabV3 as ``settings`` say (a :class:`TrainConfig`, or a dict of its fields:
    the ``gluon-deeplab-train`` flags; unknown names are an error).

    Returns ``checkpoint`` (final checkpoint path), ``best_miou``, ``iteration`` and
    ``output_dir`` (plus ``last_loss``). Raises :class:`TrainingError` for a run that cannot
    start (existing run without --resume, a checkpoint of another run, a folder in use by
    another trainer) and :class:`TrainingDiverged` on a NaN/inf loss or weights.
    """
    args = as_config(settings)
    ctxs = resolve_contexts(args.gpus, args.cpu_devices)  # before anything heavy starts
    notes = _plan_devices(args, ctxs)
    amp_dtype = init_amp(ctxs) if args.amp else None  # before the model is built
    dist = _Distributed(args.kvstore)
    if not dist.chief:  # only the chief writes to the output folder
        return _train(args, ctxs, dist, amp_dtype, notes)
    os.makedirs(args.output_dir, exist_ok=True)
    with FolderLock(args.output_dir):
        return _train(args, ctxs, dist, amp_dtype, notes)


def _plan_devices(args: TrainConfig, ctxs: Sequence[mx.Context]) -> List[str]:
    """Settle SyncBN and the kvstore in ``args`` (recorded as used); the lines to say."""
    syncbn, note = check_devices(args.batch_size, len(ctxs), args.syncbn,
                                 bool(args.freeze_batch_norm))
    args.syncbn = syncbn
    distributed = distributed_worker()
    args.kvstore, why = choose_kvstore(args.kvstore, [c.device_type for c in ctxs],
                                       nccl_available(), distributed)
    notes = [note] if note else []
    if len(ctxs) > 1 or "dist" in args.kvstore:
        notes.append(f"kvstore: {args.kvstore} ({why})")
    return notes


def _train(args: TrainConfig, ctxs, dist: _Distributed, amp_dtype: Optional[str],
           notes: Sequence[str] = ()) -> Dict[str, Any]:
    out = args.output_dir
    bar: Optional[tqdm] = None

    def say(message: str) -> None:
        if dist.chief:
            if bar is not None:
                bar.write(message)
            else:
                print(message, flush=True)

    resume_path = _find_start(args, say)
    for note in notes:
        say(note)
    if amp_dtype:
        say(describe_amp(amp_dtype, ctxs))
    if dist.chief:
        _clean_folder(out, say)
    # The data first: a missing dataset is the first thing to fix, before any download.
    train_set, val_set = _datasets(args)
    pretrained = _pretrained_weights(args, resume_path, say)  # fails early when unavailable
    max_iter = args.max_iter
    if args.train_epochs is not None:
        max_iter = iterations_for_epochs(args.train_epochs, len(train_set), args.batch_size,
                                         dist.num_workers)
        say(f"--train_epochs {args.train_epochs}: {max_iter} iterations of batch "
            f"{args.batch_size} x {dist.num_workers} worker(s) over {len(train_set)} images")
    num_classes = train_set.num_classes
    mx.random.seed(args.seed)  # initialization of the head (and a backbone not pretrained)
    np.random.seed(args.seed)
    freeze_bn, syncbn = bool(args.freeze_batch_norm), args.syncbn
    if dist.chief:
        warn_few_images_batchnorm(args.batch_size, len(ctxs), freeze_bn, syncbn)
    source = resume_path or args.init_checkpoint
    ckpt = load_checkpoint(source) if source else None
    net = build_model(num_classes, args.base_architecture, args.aspp_or_vortex,
                      args.output_stride, pretrained_backbone=pretrained,
                      aux=args.aux, freeze_bn=freeze_bn, decoder=args.decoder,
                      separable=args.separable,
                      syncbn_devices=len(ctxs) if syncbn else 0, ctx=ctxs,
                      **_head_settings_of(ckpt, args))
    start, best_miou, optimizer_states = 0, None, None
    run_id = uuid.uuid4().hex  # names this run in its log and checkpoints
    if resume_path:
        load_model_weights(net, ckpt, resume_path)
        start, best_miou, optimizer_states = ckpt.iteration, ckpt.best_miou, ckpt.optimizer_states
        run_id = run_id_of(ckpt) or run_id
        say(f"resuming from {resume_path} at iteration {start}")
    elif ckpt is not None:
        load_model_weights(net, ckpt, args.init_checkpoint)
        say(f"initialized from {args.init_checkpoint} (weights only; schedule starts at 0)")
    if args.hybridize:
        net.hybridize()
    trainer = make_trainer(net, args.initial_learning_rate, args.weight_decay,
                           args.head_lr_mult, dist.kvstore)
    if amp_dtype:
        init_amp_trainer(trainer)
    if optimizer_states:
        restore_trainer_states(trainer, optimizer_states, net)
    sync_running_stats = RunningStatsSync(
        net, dist.kvstore if dist.num_workers > 1 else None, dist.num_workers)
    loss_fn = SegmentationLoss(train_set.ignore_label, args.aux_weight if args.aux else 0.0)
    log = open_run_log(out, LOG_FILE, args.tensorboard and dist.chief, net, val_set)
    if dist.chief:
        if resume_path:
            log.truncate_after(start)
        log.write({"kind": "start", "iteration": start, "max_iter": max_iter, RUN_ID: run_id,
                   "contexts": [str(c) for c in ctxs], "workers": dist.num_workers,
                   "args": args.as_dict()})
    run_args = dict(args.as_dict(), max_iter=max_iter)
    last_good = resume_path

    def check_weights(iteration: int) -> None:
        """Stop before diverged weights are validated or saved."""
        bad = nonfinite_parameters(net)
        if bad:
            total = len(net._collect_params_with_prefix())
            raise TrainingDiverged(
                f"{len(bad)} of {total} parameter arrays are not finite at iteration "
                f"{iteration} (e.g. {bad[0]}): training stopped; the diverged weights were not "
                f"saved (last good checkpoint: {last_good or 'none'}); lower "
                "--initial_learning_rate and resume")

    def save(path: str, iteration: int) -> str:
        check_weights(iteration)
        return save_checkpoint(path, net, iteration, trainer, run_args, best_miou,
                               extra={"num_workers": dist.num_workers, RUN_ID: run_id})

    def validate(iteration: int) -> None:
        nonlocal best_miou
        check_weights(iteration)
        metrics, _ = evaluate(net, val_set, ctxs, progress=False)
        log.write(_metrics_record(metrics, iteration))
        improved = best_miou is None or metrics["miou"] > best_miou
        if improved:
            best_miou = metrics["miou"]
            save(os.path.join(out, BEST), iteration)
        say(f"iteration {iteration}: val mIoU {metrics['miou']:.4f} "
            f"pixel acc {metrics['pixel_accuracy']:.4f}"
            f"{' (best)' if improved else f' (best {best_miou:.4f})'}")

    last_loss: Union[float, mx.nd.NDArray] = float("nan")
    trained = start < max_iter
    if not trained:
        say(f"{resume_path} is at iteration {start} >= --max_iter {max_iter}: nothing to do")
    else:
        loader = make_dataloader(train_set, args.batch_size,
                                 num_workers=_loader_workers(args, len(ctxs), say),
                                 seed=args.seed, start_iteration=start,
                                 num_iterations=max_iter - start,
                                 shard=(dist.rank, dist.num_workers))
        bar = tqdm(total=max_iter, initial=start, desc="train", unit="it",
                   disable=not dist.chief or not args.progress, dynamic_ncols=True)
        window = LossWindow()
        scaler = getattr(trainer, "_amp_loss_scaler", None)
        try:
            for iteration, (images, labels) in enumerate(loader, start=start):
                lr = poly_lr(iteration, max_iter, args.initial_learning_rate,
                             args.end_learning_rate)
                trainer.set_learning_rate(lr)
                seed_devices(step_seed(args.seed, iteration, dist.rank), ctxs)
                loss = forward_backward(net, loss_fn, images, labels, ctxs,
                                        amp_trainer=trainer if amp_dtype else None)
                trainer.step(dist.num_workers)
                done = iteration + 1
                if scaler is not None and scaler.last_skipped:
                    window.skipped += 1  # AMP overflow (loss or gradients): no update
                    check_loss_scale(scaler, done, last_good)
                else:
                    last_loss = loss
                    window.add(done, loss)
                bar.update(1)
                if done % args.log_interval == 0 or done == max_iter:
                    log_window(window, done, lr, scaler, log if dist.chief else None,
                                bar, last_good)
                validating = val_set is not None and (
                    done % args.val_interval == 0 or done == max_iter)
                saving = done % args.checkpoint_interval == 0 and done < max_iter
                if validating or saving:
                    sync_running_stats()  # collective: every worker, same iterations
                if not dist.chief:
                    continue
                if validating:
                    validate(done)
                    plot_curves(log.read(), os.path.join(out, CURVES_FILE))
                if saving:
                    last_good = save(checkpoint_path(out, done), done)
                    prune_checkpoints(out, args.keep_checkpoints)
                    plot_curves(log.read(), os.path.join(out, CURVES_FILE))
        finally:
            bar.close()
            bar = None
        start = max_iter
    final = os.path.join(out, FINAL)
    if trained:
        sync_running_stats()
    if dist.chief:
        if trained or resume_path != final:
            save(final, start)
        plot_curves(log.read(), os.path.join(out, CURVES_FILE))
        say(f"done: {start} iterations, final checkpoint {final}"
            + (f", best val mIoU {best_miou:.4f}" if best_miou is not None else ""))
    if dist.num_workers > 1:
        # Every worker's weights, to check that the workers stayed in lock step.
        check_weights(start)
        atomic_write(os.path.join(out, f"final-rank{dist.rank}.params"), net.save_parameters)
    if isinstance(last_loss, mx.nd.NDArray):
        last_loss = float(last_loss.asscalar())
    return {"checkpoint": final, "best_miou": best_miou, "iteration": start,
            "output_dir": out, "last_loss": last_loss, "max_iter": max_iter}

