"""Iteration-based training: SGD/AdamW, poly/cosine LR, gradient accumulation, EMA of the weights,
periodic evaluation, atomic checkpoints, resume, DDP."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from timm.utils import ModelEmaV3
from tqdm import tqdm

from ...data.transforms import rescale_size
from ..builders import (
    build_eval_dataset,
    build_model,
    build_train_dataset,
    class_balance_weights,
    size_warnings,
    train_transform,
)
from ...data.io import OutputRefused, written_by_contextseg
from ...data.text import printable
from ..checkpoints.files import WorkDirLock, append_no_follow, check_torch_file, write_atomic
from ..checkpoints.saved_model import load_weights_checked
from ..checkpoints.checkpoint import (
    ensure_writable_folder,
    find_resume,
    load_checkpoint,
    model_state,
    nonfinite_tensors,
    remove_stale_temporaries,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from ..config import Config, ConfigError, version_differences
from ..distributed import (
    barrier,
    cleanup_distributed,
    get_rank,
    get_world_size,
    init_distributed,
    is_main_process,
    resolve_device,
)
from ..evaluate import evaluate, format_results
from ..loaders import cap_workers, guarded, make_loader
from ..log import get_logger, setup_logging
from ..precision import Precision, autocast_context, resolve_precision
from .optim import build_optimizer, build_scheduler
from .sampler import InfiniteSampler, SeededDraws

__all__ = ["Trainer", "train"]

log = get_logger("train")


class Trainer:
    """Trains ``cfg`` from scratch or from ``work_dir/last.pt`` (``train.resume: auto``).

    Only rank 0 writes files: ``last.pt`` (every ``checkpoint_interval`` iterations, every
    evaluation, at the end, and on SIGINT/SIGTERM), ``best.pt`` (best mIoU), ``config.yaml``,
    ``log.jsonl`` (one JSON object per logged iteration or evaluation) and TensorBoard scalars
    under ``tb/`` when the ``tensorboard`` package is installed.

    Resuming is exact: the sampler's position, each draw's augmentation seed (see
    `SeededDraws`), the global RNG (dropout), optimizer,
    scheduler, EMA and scaler states all come back, so a run killed at any point and resumed ends
    with the same weights as one that was never stopped. Weights that turn non-finite stop the run
    at that iteration and are never saved. ``overwrite=False`` refuses to start afresh
    (``train.resume: false``) in a work dir that holds another run's checkpoints.
    """

    def __init__(self, cfg: Config, progress: bool = True, overwrite: bool = False, source: str | None = None) -> None:
        self.cfg = cfg
        self.progress = progress
        tc = cfg.train
        self.device = resolve_device(tc.device)
        self.distributed = init_distributed(self.device)
        self.rank, self.world_size = get_rank(), get_world_size()
        if tc.batch_size % (self.world_size * tc.accumulate_steps):
            raise ConfigError(
                f"train.batch_size={tc.batch_size} (global) is not divisible by {self.world_size} process(es) "
                f"x train.accumulate_steps={tc.accumulate_steps}"
            )
        self.batch_per_rank = tc.batch_size // (self.world_size * tc.accumulate_steps)  # one micro-batch
        _seed_everything(tc.seed + self.rank)
        self.work_dir = cfg.work_dir

        self.train_set = build_train_dataset(cfg)
        if is_main_process():
            for warning in size_warnings(cfg, self.train_set):
                log.warning(warning)
        weights = class_balance_weights(cfg, self.train_set)
        stated = cfg.model.get("ignore_index")
        if stated is not None and stated != self.train_set.ignore_index:
            raise ConfigError(f"model.ignore_index={stated!r} but dataset {cfg.data.name!r} marks ignored pixels with {self.train_set.ignore_index}: "
                              "the loss would learn the ignored pixels as a class; leave model.ignore_index out")
        self.model = build_model(cfg, len(self.train_set.classes), self.train_set.ignore_index, weights).to(self.device)
        _check_batch_norm_batch(self.model, self.batch_per_rank, self.world_size if (self.distributed and tc.sync_bn and self.device.type == "cuda") else 1)
        if self.model.uses_positions:  # HANet: carry the row-position map through the transforms
            self.train_set.transforms = train_transform(cfg, self.train_set, with_positions=True)
        self.val_set = build_eval_dataset(cfg)
        _check_tied_input(cfg, self.model, self.val_set)  # before training: an evaluation that cannot run would lose it
        self.classes = list(self.train_set.classes)
        self.palette = [list(map(int, c)) for c in self.train_set.palette]

        self.precision = resolve_precision(tc.precision, tc.channels_last, self.device)
        self.memory_format = self.precision.memory_format
        self.model = self.model.to(memory_format=self.memory_format)
        if self.distributed and tc.sync_bn:
            if self.device.type == "cuda":
                self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            elif is_main_process():
                log.info("train.sync_bn: SyncBatchNorm needs GPUs; on the CPU each process normalises its own batch")
        # the weights evaluated and exported: an exponential moving average when train.ema is set
        self.ema = ModelEmaV3(self.model, decay=float(tc.ema), use_warmup=True, warmup_power=0.75) if tc.ema else None
        self.optimizer = build_optimizer(self.model, tc)
        self.scheduler = build_scheduler(self.optimizer, tc)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision.precision == "fp16")
        self.autocast = autocast_context(self.device, self.precision.precision)
        self.iteration = 0
        self.phase_seconds: dict[str, float] = {}  # cumulative wall time of data / forward / backward / step
        self.best_miou = -1.0
        self.last_results: dict | None = None
        self._tb = None  # TensorBoard writer, rank 0 only, when the package is installed
        self._resume_rng = None  # restored once the data iterator exists (creating it draws from the RNG)
        self._stop_signal: int | None = None
        self._pending_eval = False  # resumed from a checkpoint written just before an evaluation
        self._resumed_from: Path | None = None
        self._lock = None
        if is_main_process():
            ensure_writable_folder(self.work_dir, "train.work_dir")
            self._lock = WorkDirLock(self.work_dir).acquire()  # before any file in it is touched
            remove_stale_temporaries(self.work_dir)  # a kill while saving leaves .last.pt.*.tmp files
        try:
            resume = find_resume(self.work_dir, tc.resume)
            _check_run_files(self.work_dir, getattr(cfg, "files_read", ()), fresh=resume is None and overwrite)
            if resume is None and not overwrite:
                _refuse_to_overwrite(self.work_dir)
            if resume is not None:
                self._load(resume)
            elif is_main_process():
                _truncate_log(self.work_dir / "log.jsonl", 0)  # a fresh start: drop what a run killed before its first checkpoint logged
        except BaseException:
            self.close()
            raise
        if is_main_process():  # announced once every input has been accepted: a refused run prints only its refusal
            self._announce(source, weights)
        self.ddp = (
            DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if self.distributed
            else self.model
        )
        if tc.compile:  # the training forward only; checkpoints, EMA and evaluation use the plain module
            self.ddp = torch.compile(self.ddp)

    def close(self) -> None:
        """Release the work dir (its lock) and the TensorBoard writer; the trainer can be dropped."""
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # -- state ---------------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "model": model_state(self.model),
            **({"ema": model_state(self.ema.module)} if self.ema is not None else {}),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "iteration": self.iteration,
            "best_miou": self.best_miou,
            "metrics": self.last_results,
            "rng": self._rng_states(),
            "config": self.cfg.to_dict(),
            "precision": self.precision.to_dict(),  # what train.precision / channels_last resolved to
            "classes": self.classes,
            "palette": self.palette,
            "base_size": list(self.val_set.transforms.base_size) if getattr(self.val_set.transforms, "base_size", None) else None,
        }

    def _rng_states(self) -> list:
        """Every rank's RNG state (dropout differs per rank), gathered to rank 0."""
        state = rng_state()
        if not self.distributed:
            return [state]
        states: list = [None] * self.world_size
        torch.distributed.all_gather_object(states, state)
        return states

    def _load(self, path: Path) -> None:
        ckpt = load_checkpoint(path, map_location=self.device)
        lacking = [key for key in ("model", "optimizer", "scheduler", "iteration") if key not in ckpt]
        if lacking:
            raise ConfigError(f"cannot resume from {path}: it is not a training checkpoint (it has no {', '.join(lacking)}: a stripped or exported model?); "
                              "resume from the last.pt a training wrote, or start from these weights with a fresh train.work_dir")
        _check_same_model(ckpt, self.cfg, path, self.model.num_classes)
        _check_same_version(ckpt, path)
        self._keep_resolved_precision(ckpt.get("precision"), path)
        if not isinstance(ckpt["model"], dict):
            raise ConfigError(f"cannot resume from {path}: its model entry is a {type(ckpt['model']).__name__}, not weights")
        try:
            load_weights_checked(self.model, ckpt["model"], str(path))  # dtypes and finite values, as every load
        except ConfigError as exc:
            raise ConfigError(f"cannot resume: {exc}") from None

        def restore(part: str, action):
            """One part of the training state, or one line naming the part a damaged file breaks."""
            try:
                return action()
            except (TypeError, ValueError, KeyError, AttributeError, RuntimeError, IndexError) as exc:
                raise ConfigError(f"cannot resume from {path}: its {part} is damaged ({' '.join(str(exc).split())[:200]})") from None

        def typed(part: str, saved, fresh) -> None:
            """The saved state of ``part`` has the keys' types (and lists' lengths) of a fresh one, so
            that a damaged value is refused here, not met as a traceback at some later step."""
            problem = state_type_problem(saved, fresh)
            if problem is not None:
                raise ConfigError(f"cannot resume from {path}: its {part} is damaged ({problem})")

        if self.ema is not None:
            restore("ema", lambda: self.ema.module.load_state_dict(ckpt.get("ema", ckpt["model"])))
        typed("optimizer state", ckpt["optimizer"], self.optimizer.state_dict())
        restore("optimizer state", lambda: self.optimizer.load_state_dict(ckpt["optimizer"]))
        _check_optimizer_moments(self.optimizer, path)
        typed("scheduler state", ckpt["scheduler"], self.scheduler.state_dict())
        restore("scheduler state", lambda: self.scheduler.load_state_dict(ckpt["scheduler"]))
        if ckpt.get("scaler"):
            typed("gradient scaler state", ckpt["scaler"], self.scaler.state_dict())
            restore("gradient scaler state", lambda: self.scaler.load_state_dict(ckpt["scaler"]))
        iteration = ckpt["iteration"]
        if isinstance(iteration, torch.Tensor) and iteration.numel() == 1 and not iteration.is_floating_point():
            iteration = iteration.item()
        if not isinstance(iteration, int) or isinstance(iteration, bool) or not 0 <= iteration <= MAX_ITERATIONS:
            raise ConfigError(f"cannot resume from {path}: its iteration is damaged ({printable(repr(iteration))[:80]}: expected a whole number in [0, {MAX_ITERATIONS}])")
        self.iteration = iteration
        pending = ckpt.get("pending_eval", False)
        if not isinstance(pending, bool):
            raise ConfigError(f"cannot resume from {path}: its pending_eval is damaged ({type(pending).__name__}, expected true or false)")
        self._pending_eval = pending
        self.best_miou = _best_miou(ckpt.get("best_miou", -1.0), path)
        self.last_results = ckpt.get("metrics")
        states = ckpt.get("rng")
        states = [states] if isinstance(states, dict) else states  # checkpoints before per-rank states
        if states and len(states) == self.world_size:
            self._resume_rng = states[self.rank]
            current = rng_state()  # prove the saved state restores (it is applied once the data iterator exists)
            restore("random number generator state", lambda: set_rng_state(self._resume_rng))
            set_rng_state(current)
        if is_main_process():
            _truncate_log(self.work_dir / "log.jsonl", self.iteration)
        self._log({"event": "resume", "iter": self.iteration, "checkpoint": str(path)})
        self._resumed_from = path

    def _announce(self, source: str | None, weights) -> None:
        """The run's first lines: what trains on what (with the precision it resolved to, a resumed
        run's included), its data and parameters, its class weights, and where it resumes."""
        cfg, tc = self.cfg, self.cfg.train
        log.info("training %s (%s) on %s%s: %d iterations, batch %d, work dir %s; %s", cfg.model["name"], cfg.model.get("backbone", "resnet50d"),
                 cfg.data.name, f" from {source}" if source else "", tc.max_iters, tc.batch_size, self.work_dir, self.precision.describe())
        params = sum(p.numel() for p in self.model.parameters()) / 1e6
        log.info("data: %d training and %d validation images of %s; model %s, %.1fM parameters", len(self.train_set), len(self.val_set),
                 cfg.data.name, cfg.model["name"], params)
        if weights is not None:
            log.info("data.class_balance=%s: class weights %s", cfg.data.class_balance, weights)
        if self._resumed_from is not None:
            log.info("resumed from %s at iteration %d", self._resumed_from, self.iteration)

    def _keep_resolved_precision(self, saved, path: Path) -> None:
        """A run resumed with ``auto`` keeps the precision and memory format it started with (its
        checkpoint's), so that it continues as it would have on the machine that started it."""
        if not isinstance(saved, dict) or saved.get("precision") not in ("fp32", "bf16", "fp16") or not isinstance(saved.get("channels_last"), bool):
            return
        tc = self.cfg.train
        precision = saved["precision"] if tc.precision == "auto" else self.precision.precision
        channels_last = saved["channels_last"] if tc.channels_last == "auto" else self.precision.channels_last
        if (precision, channels_last) == (self.precision.precision, self.precision.channels_last):
            return
        if is_main_process():
            log.warning("resuming %s, which trained in %s%s: keeping that (auto on this machine would choose %s%s); set train.precision "
                        "and train.channels_last to change it", path, precision, ", channels_last" if channels_last else "",
                        self.precision.precision, ", channels_last" if self.precision.channels_last else "")
        self.precision = Precision(precision, channels_last, f"kept from {path.name}, where it was: {saved.get('reason', 'not recorded')}")
        self.memory_format = self.precision.memory_format
        self.model.to(memory_format=self.memory_format)
        if self.ema is not None:
            self.ema.module.to(memory_format=self.memory_format)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=precision == "fp16")
        self.autocast = autocast_context(self.device, precision)

    # -- logging -------------------------------------------------------------------------------
    def _log(self, record: dict) -> None:
        if not is_main_process():
            return
        self.work_dir.mkdir(parents=True, exist_ok=True)
        # a full disk or a link at log.jsonl: one line naming the file (a torn last line is dropped on resume)
        append_no_follow(self.work_dir / "log.jsonl", json.dumps({"time": round(time.time(), 3), **record}) + "\n")
        if self._tb is not None:
            step = record.get("iter", self.iteration)
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "iter":
                    self._tb.add_scalar(f"{record.get('event', 'train')}/{key}", value, step)

    def _open_tensorboard(self) -> None:
        if not is_main_process():
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is an optional extra
            return
        self._tb = SummaryWriter(str(self.work_dir / "tb"))

    # -- loop ----------------------------------------------------------------------------------
    def fit(self) -> dict:
        """Train to ``max_iters``; return the last evaluation's results. The work dir stays locked
        from the trainer's creation to the end of ``fit`` (finished or failed); calling ``fit``
        again takes the lock again."""
        if is_main_process() and self._lock is None:
            self._lock = WorkDirLock(self.work_dir).acquire()
        try:
            return self._fit()
        finally:
            self.close()

    def _fit(self) -> dict:
        tc = self.cfg.train
        if is_main_process():
            self.work_dir.mkdir(parents=True, exist_ok=True)
            write_atomic(self.work_dir / "config.yaml", self.cfg.dump())
            self._open_tensorboard()
        self._log({"event": "precision", "iter": self.iteration, **self.precision.to_dict()})
        drawn = self.iteration * self.batch_per_rank * tc.accumulate_steps  # samples this rank has drawn
        loader = make_loader(  # at most one worker per CPU
            SeededDraws(self.train_set, tc.seed),
            self.cfg.data.num_workers,
            batch_size=self.batch_per_rank,
            sampler=InfiniteSampler(len(self.train_set), True, tc.seed, self.rank, self.world_size, start=drawn, numbered=True),
            pin_memory=self.device.type == "cuda",
            drop_last=True,
            persistent_workers=False,
        )
        batches = guarded(loader)  # iter(loader), whose worker failures (no /dev/shm, too few open files) are one line saying what to change
        if self._resume_rng is not None:  # after iter(): creating the iterator draws a base seed
            set_rng_state(self._resume_rng)
            self._resume_rng = None
        if self._pending_eval:  # the evaluation the stopped run did not finish, with the same RNG draws
            self._pending_eval = False
            self._evaluate_and_save()
        self.model.train()
        handlers = self._catch_stop_signals()
        bar = tqdm(total=tc.max_iters, initial=self.iteration, desc="train", dynamic_ncols=True, disable=not (self.progress and is_main_process()))
        running: dict[str, float] = {}
        seen = 0
        t0 = time.time()
        first = self.iteration + 1
        while self.iteration < tc.max_iters:
            losses = self._step(batches)
            self.iteration += 1
            if self.iteration == first and first % tc.log_interval and bar.disable and is_main_process():
                # without a progress bar the first line would come only at the first log interval: say at once that it runs
                log.info("iter %d/%d  loss %.4f  (first iteration in %.1f s, data loading included; then a line every %d iterations)",
                         self.iteration, tc.max_iters, losses["loss"], time.time() - t0, tc.log_interval)
            for k, v in losses.items():
                running[k] = running.get(k, 0.0) + v
            seen += 1
            bar.update(1)
            if self.iteration % tc.log_interval == 0 or self.iteration == tc.max_iters:
                means = {k: v / seen for k, v in running.items()}
                lr = self.optimizer.param_groups[0]["lr"] / self.optimizer.param_groups[0].get("lr_mult", 1.0)
                sec_per_iter = (time.time() - t0) / seen
                bar.set_postfix(loss=f"{means['loss']:.4f}", lr=f"{lr:.2e}")
                if bar.disable and is_main_process():  # no terminal: one plain line per log interval
                    eta = sec_per_iter * (tc.max_iters - self.iteration)
                    log.info("iter %d/%d  loss %.4f  lr %.2e  %.2f s/it  eta %.1f min", self.iteration, tc.max_iters, means["loss"], lr, sec_per_iter, eta / 60)
                self._log({"event": "train", "iter": self.iteration, "lr": lr, **means, "sec_per_iter": sec_per_iter})
                running, seen, t0 = {}, 0, time.time()
            if self.iteration % tc.eval_interval == 0 or self.iteration == tc.max_iters:
                self._evaluate_and_save()
            elif self.iteration % tc.checkpoint_interval == 0:
                self._save()
            if self._stop_signal is not None:
                break
        bar.close()
        self._restore_signals(handlers)
        if self._stop_signal is not None:
            self._save()
            name = signal.Signals(self._stop_signal).name
            if is_main_process():
                log.info("%s: stopped at iteration %d; saved %s (run the same command again to resume)", name, self.iteration, self.work_dir / "last.pt")
            raise KeyboardInterrupt(name)
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self.last_results is None:  # resumed a finished run
            self._evaluate_and_save()
        return self.last_results

    def _step(self, batches) -> dict[str, float]:
        """One optimizer step over ``train.accumulate_steps`` micro-batches drawn from ``batches``;
        returns the loss terms averaged over the micro-batches (and ranks)."""
        tc = self.cfg.train
        steps = tc.accumulate_steps
        clock = self.phase_seconds
        tick = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        total: torch.Tensor | None = None
        for micro in range(steps):
            batch = next(batches)
            tick = _lap(clock, "data", tick)
            images = batch["image"].to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
            targets = batch["mask"].to(self.device, non_blocking=True)
            positions = batch.get("positions")
            kwargs = {"positions": positions.to(self.device)} if positions is not None else {}
            sync = self.ddp.no_sync if self.distributed and micro < steps - 1 else nullcontext
            with sync():
                with self.autocast():
                    losses = self.ddp(images, targets, **kwargs)
                loss = losses["loss"]
                tick = _lap(clock, "forward", tick)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"non-finite loss {loss.item()} at iteration {self.iteration + 1} "
                        f"({ {k: float(v) for k, v in losses.items()} }); lower train.lr"
                        + (" or use train.precision=fp32" if self.precision.precision != "fp32" else "")
                    )
                self.scaler.scale(loss / steps).backward()
            values = torch.stack([v.detach().float() for v in losses.values()]) / steps
            total = values if total is None else total + values
            tick = _lap(clock, "backward", tick)
        if tc.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self._check_finite_weights()
        if self.ema is not None:
            self.ema.update(self.model, step=self.iteration + 1)
        if self.distributed:
            torch.distributed.all_reduce(total)
            total /= self.world_size
        _lap(clock, "step", tick)
        return dict(zip(losses.keys(), total.tolist()))

    def _check_finite_weights(self) -> None:
        """Stop at the step that made a weight or a BN statistic NaN or infinite (one vector norm
        per tensor, a few ms); nothing of it is ever saved."""
        tensors = [t for t in (*self.model.parameters(), *self.model.buffers()) if t.is_floating_point()]
        if bool(torch.isfinite(torch.stack(torch._foreach_norm(tensors))).all()):
            return
        bad = nonfinite_tensors(self.model.state_dict())
        raise FloatingPointError(
            f"the weights became non-finite at iteration {self.iteration + 1} (in {', '.join(bad[:3])}"
            f"{f' and {len(bad) - 3} more' if len(bad) > 3 else ''}); the run diverged: lower train.lr"
            + (" or use train.precision=fp32" if self.precision.precision != "fp32" else "")
            + f"; {self.work_dir / 'last.pt'} keeps the last good state"
        )

    def _save(self, best: bool = False, pending_eval: bool = False) -> None:
        """Write ``last.pt`` (and ``best.pt``) on rank 0; every rank takes part in gathering RNG states."""
        state = self.state()
        if pending_eval:
            state["pending_eval"] = True
        if is_main_process():
            save_checkpoint(state, self.work_dir / "last.pt")
            if best:
                save_checkpoint(state, self.work_dir / "best.pt")

    def _catch_stop_signals(self) -> dict:
        """SIGINT (Ctrl-C) and SIGTERM finish the current step, save ``last.pt`` and stop."""
        def stop(signum, frame):
            self._stop_signal = signum

        handlers = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                handlers[sig] = signal.signal(sig, stop)
            except ValueError:  # not the main thread: leave the handlers alone
                pass
        return handlers

    @staticmethod
    def _restore_signals(handlers: dict) -> None:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)

    def _evaluate_and_save(self) -> None:
        # the trained weights first, marked as awaiting their evaluation: an evaluation that fails
        # never loses them, and a run resumed from this file evaluates first (as the lost run did)
        self.last_results = None
        self._save(pending_eval=True)
        evaluated = self.ema.module if self.ema is not None else self.model
        if self.distributed:  # BN running statistics drift apart per rank without SyncBN: use rank 0's
            for buffer in evaluated.buffers():
                torch.distributed.broadcast(buffer, src=0)
        started = time.perf_counter()
        results = evaluate(
            evaluated,
            self.val_set,
            self.cfg.evaluate,
            self.device,
            crop_size=self.cfg.data.crop_size,
            num_workers=0 if self.cfg.data.cache else min(cap_workers(self.cfg.data.num_workers), 2),
            autocast=self.autocast,
            progress=self.progress,
        )
        self.model.train()
        self.last_results = results
        self._log({"event": "val", "iter": self.iteration, "mIoU": results["mIoU"], "mAcc": results["mAcc"], "aAcc": results["aAcc"], "eval_seconds": time.perf_counter() - started})
        improved = not math.isnan(results["mIoU"]) and results["mIoU"] > self.best_miou
        if improved:
            self.best_miou = results["mIoU"]
        self._save(best=improved)
        if is_main_process():
            tqdm.write(f"iter {self.iteration}: mIoU {100 * results['mIoU']:.2f}  mAcc {100 * results['mAcc']:.2f}  aAcc {100 * results['aAcc']:.2f}")
        barrier()


def _check_tied_input(cfg: Config, model, val_set) -> None:
    """A model tied to its training crop (CPNet's prior, `Segmentor.crop_options`) can only be
    evaluated on inputs of that crop: slide windows of it, or whole images that happen to have its
    size. Checked on the config and the validation images' sizes before any iteration runs."""
    tied = model.tied_input_size()
    if tied is None:
        return
    cls, stride, ev = type(model), model.backbone.output_stride, cfg.evaluate
    want = cls.crop_options(tied, stride)
    name = f"{cls.__name__} is tied to its {tied[0]}x{tied[1]} training crop ({', '.join(f'{k}={list(v)}' for k, v in want.items())})"
    if ev.mode == "slide":
        window = tuple(ev.crop_size or cfg.data.crop_size)
        if cls.crop_options(window, stride) != want:
            raise ConfigError(f"evaluate.crop_size={list(window)}: {name}; leave evaluate.crop_size out to slide windows of data.crop_size")
        return
    if any(float(s) != 1.0 for s in ev.scales):
        raise ConfigError(f"evaluate.mode=whole with evaluate.scales={ev.scales}: {name}, so rescaled whole images cannot run; use evaluate.mode: slide")
    base = getattr(val_set.transforms, "base_size", None)
    for h, w in val_set.image_sizes(limit=64):
        size = rescale_size(h, w, base) if base else (h, w)
        if cls.crop_options(size, stride) != want:
            raise ConfigError(f"evaluate.mode=whole: {name}, but validation images are {size[0]}x{size[1]} at the test scale; "
                              "use evaluate.mode: slide (windows of the crop), or a data.crop_size of the images' size")


def _check_batch_norm_batch(model: torch.nn.Module, per_step: int, synced_processes: int) -> None:
    """BatchNorm normalises over the images of one step (of every process with SyncBatchNorm); one
    image gives statistics of a single image (and a pooled 1x1 branch cannot be normalised at all)."""
    has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if has_bn and per_step * synced_processes < 2:
        raise ConfigError(
            f"train.batch_size gives {per_step} image per step and process, but the model has BatchNorm layers, which need at least 2 "
            "(raise train.batch_size, lower train.accumulate_steps, or use more processes with SyncBatchNorm)"
        )


def _lap(clock: dict[str, float], phase: str, since: float) -> float:
    """Add the seconds since ``since`` to ``clock[phase]``; return now."""
    now = time.perf_counter()
    clock[phase] = clock.get(phase, 0.0) + now - since
    return now


MAX_ITERATIONS = 10**12  # train.max_iters' own bound


def state_type_problem(saved, fresh, where: str = "") -> str | None:
    """Where ``saved`` (a state dict read from a file) differs in type from ``fresh`` (the same
    object's state now): a mapping that is not one, a number that is text, a list of another length.
    Keys only the file has are left to the loader; a fresh ``None`` accepts anything."""
    name = where or "the state"
    if isinstance(fresh, dict):
        if not isinstance(saved, dict):
            return f"{name} is a {type(saved).__name__}, expected a mapping"
        for key, value in fresh.items():
            if key in saved:
                problem = state_type_problem(saved[key], value, f"{where}.{key}" if where else str(key))
                if problem is not None:
                    return problem
        return None
    if isinstance(fresh, (list, tuple)):
        if not isinstance(saved, (list, tuple)) or len(saved) != len(fresh):
            return f"{name} is {type(saved).__name__ if not isinstance(saved, (list, tuple)) else f'a list of {len(saved)}'}, expected a list of {len(fresh)}"
        for i, (a, b) in enumerate(zip(saved, fresh)):
            problem = state_type_problem(a, b, f"{name}[{i}]")
            if problem is not None:
                return problem
        return None
    if isinstance(fresh, bool):
        ok = isinstance(saved, bool)
    elif isinstance(fresh, (int, float)):
        ok = isinstance(saved, (int, float)) and not isinstance(saved, bool) and math.isfinite(saved)
    elif isinstance(fresh, str):
        ok = isinstance(saved, str)
    elif isinstance(fresh, torch.Tensor):
        ok = isinstance(saved, torch.Tensor) and saved.dtype == fresh.dtype and (fresh.ndim > 0 or saved.numel() == 1)
    else:
        ok = True
    return None if ok else f"{name} is {printable(repr(saved))[:60]}, expected a {type(fresh).__name__}"


def _check_optimizer_moments(optimizer: torch.optim.Optimizer, path: Path) -> None:
    """Each loaded per-parameter state tensor (momentum, Adam's moments) has its parameter's shape
    (or is a scalar, as ``step``): a mismatch would surface as a traceback at the next step."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            for key, value in optimizer.state.get(param, {}).items():
                if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape != param.shape:
                    raise ConfigError(f"cannot resume from {path}: its optimizer state is damaged ({key} of shape {tuple(value.shape)} "
                                      f"for a parameter of shape {tuple(param.shape)})")
                if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
                    raise ConfigError(f"cannot resume from {path}: its optimizer state is damaged (non-finite values in {key})")


def _best_miou(value, path: Path) -> float:
    """The saved best mIoU, or -1 (unknown: the next evaluation becomes best.pt) where it is not a
    finite number in [0, 100] or -1: a NaN would never be beaten, and best.pt never written again."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and (0 <= value <= 100 or value == -1):
        return float(value)
    if is_main_process():
        log.warning("%s: its best mIoU (%s) is not a number in [0, 100]; treating it as unknown (the next evaluation writes best.pt)",
                    path, printable(repr(value))[:60])
    return -1.0


RUN_FILES = ("config.yaml", "log.jsonl", "last.pt", "best.pt")  # what a run writes in its work dir


def _check_run_files(work_dir: Path, files_read: tuple[Path, ...], fresh: bool) -> None:
    """The work dir's files that a run writes must be a run's: the config this run reads (or one of
    its ``_base_`` files) named ``config.yaml`` there is never replaced, nor a file contextseg did not
    write (a ``config.yaml`` without its mark and without a checkpoint beside it, a ``log.jsonl``
    that is not a training log), nor something that is not a file. ``fresh`` (``--overwrite``
    without resuming): existing ``last.pt``/``best.pt`` must be contextseg checkpoints too."""
    for name in RUN_FILES:
        path = work_dir / name
        for source in files_read:
            try:
                same = os.path.samefile(source, path)
            except OSError:
                same = False
            if same:
                raise OutputRefused(f"train.work_dir {str(work_dir)!r} holds the config this run reads ({source}) as {name}, which the run writes; "
                                    "choose another train.work_dir (a config is never written over)")
        if not os.path.lexists(path):
            continue
        if path.is_symlink() or not path.is_file():
            raise OutputRefused(f"{path} exists and is not a regular file (a link, folder, FIFO or device), where the run writes its {name}; "
                                "move it away or choose another train.work_dir")
        if name == "config.yaml":
            ours = written_by_contextseg(path) or any((work_dir / c).is_file() for c in ("last.pt", "best.pt"))  # earlier versions wrote it unmarked beside their checkpoints
        elif name == "log.jsonl":
            with open(path, "rb") as f:
                first = f.readline(256)
            ours = not first.strip() or first.startswith(b'{"')  # a JSON record, as every line the trainer logs
        else:
            ours = not fresh or _is_training_checkpoint(path)
        if not ours:
            raise OutputRefused(f"{path} exists and was not written by contextseg, where the run writes its {name}; it is never replaced "
                                "(--overwrite included): move it away or choose another train.work_dir")


def _is_training_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a checkpoint contextseg's trainer wrote (read memory-mapped: no tensor is copied)."""
    try:
        check_torch_file(path)
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a torch file, a legacy pickle (no mmap), objects safe loading refuses
        return False
    return isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict) and "iteration" in ckpt


def _refuse_to_overwrite(work_dir: Path) -> None:
    """A fresh run must not silently replace another run's checkpoints."""
    existing = [work_dir / name for name in ("last.pt", "best.pt") if (work_dir / name).is_file()]
    if existing:
        raise ConfigError(
            f"work dir {work_dir} holds checkpoints of another run ({', '.join(p.name for p in existing)}) and "
            "train.resume is off: resume it (train.resume=auto), choose another train.work_dir, or pass --overwrite"
        )


def _check_same_model(ckpt: dict, cfg: Config, path: Path, num_classes: int) -> None:
    """A checkpoint of another model or class count is a clear error naming both."""
    theirs = (ckpt.get("config") or {}).get("model", {}).get("name")
    their_classes = len(ckpt["classes"]) if "classes" in ckpt else None
    ours = cfg.model["name"]
    if theirs is not None and theirs != ours:
        raise ConfigError(f"cannot resume from {path}: it holds a {theirs!r} model but the config trains {ours!r}; choose another train.work_dir or train.resume=false with --overwrite")
    if their_classes is not None and their_classes != num_classes:
        raise ConfigError(f"cannot resume from {path}: it was trained on {their_classes} classes but the dataset has {num_classes}")


def _check_same_version(ckpt: dict, path: Path) -> None:
    """A checkpoint whose config another contextseg version wrote (keys this one does not know, or
    lacks) cannot continue exactly: refuse with the keys (predict and eval still read it)."""
    if not isinstance(ckpt.get("config"), dict):
        return
    unknown, missing = version_differences(ckpt["config"])
    if unknown or missing:
        what = "; ".join(part for part in (f"keys this version does not know: {', '.join(unknown)}" if unknown else "",
                                           f"keys it lacks: {', '.join(missing)}" if missing else "") if part)
        raise ConfigError(f"cannot resume from {path}: it was written by another contextseg version ({what}), so training could not "
                          "continue exactly as it started; resume with the version that wrote it, or train afresh in another train.work_dir "
                          "(predict and eval still read it)")


def _truncate_log(path: Path, iteration: int) -> None:
    """Keep the records of ``log.jsonl`` up to ``iteration`` (a killed run logged past the checkpoint
    it resumes from) and drop lines that are not JSON records (a line torn by a kill, bytes that are
    not text), saying how many; rewritten atomically."""
    if not path.is_file():
        return
    lines = path.read_bytes().split(b"\n")
    kept, torn = [], 0
    for raw in lines:
        if not raw.strip():
            continue
        record = _record(raw)
        if record is None:
            torn += 1
        elif int(record.get("iter", 0) or 0) <= iteration:
            kept.append(raw.decode())
    if torn:
        log.warning("%s: dropped %d line(s) that are not JSON records (torn by a killed run, or damaged)", path, torn)
    if len(kept) != len([raw for raw in lines if raw.strip()]):
        write_atomic(path, "".join(line + "\n" for line in kept))


def _record(raw: bytes) -> dict | None:
    """A ``log.jsonl`` line as its record, or None when it is not one."""
    try:
        record = json.loads(raw.decode("utf-8"))
        int(record.get("iter", 0) or 0)
        return record
    except (ValueError, AttributeError, TypeError):
        return None


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(cfg: Config, progress: bool = True, overwrite: bool = False, source: str | None = None) -> dict:
    """Train ``cfg`` and log the final per-class table (rank 0). Returns the final results.
    ``source`` names where the config came from in the run's first line (the CLI's config file)."""
    setup_logging()
    trainer = Trainer(cfg, progress=progress, overwrite=overwrite, source=source)
    try:
        results = trainer.fit()
        if is_main_process():
            log.info(format_results(results, trainer.classes))
            log.info("checkpoints: %s (last), %s (best mIoU)", trainer.work_dir / "last.pt", trainer.work_dir / "best.pt")
        return results
    finally:
        trainer.close()
        cleanup_distributed()
