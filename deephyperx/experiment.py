"""The one experiment skeleton: settings -> experiment folder -> seeds -> fit -> evaluate -> reports.

Classification, generation, segmentation and the catalogue command all run through
:class:`Experiment`; what differs between them is a small :class:`Task`. The skeleton owns:

- the seeds: claimed before any work (:func:`claimed_seeds`; under torchrun rank 0 alone claims),
  every random stream seeded from the run's seed;
- the task's checks and builds before any folder exists (:meth:`Task.prepare`): bad input fails
  with nothing written;
- each seed's folder, built as ``seed<N>.partial/`` and renamed when complete: kept and resumed from
  its checkpoint when it holds a run of the same experiment and seed (:func:`resume_partial_folder`),
  removed after bad input unless it holds a checkpoint to resume from
  (:func:`discard_unresumable_partial`);
- the monitors: the console, ``metrics.jsonl``, the task's own (its file monitor), the caller's;
- ``checkpoint.pt`` made ``model.pt`` only once every report is written, so a failure resumes;
- the loop over seeds: finished seeds read back (``reuse_finished``), diverged seeds recorded in
  ``seed<N>.diverged.json`` and left out, ``results.json`` / ``results.md`` rebuilt from every
  finished seed under the folder's lock.

Under torchrun every rank fits; rank 0 alone touches the folders and monitors and writes the
reports, and sends the others what they need (the checkpoint to resume from, the final metrics).
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from deephyperx import checkpoint as ckpt
from deephyperx import distributed
from deephyperx.atomic import atomic_write_text, replace_directory
from deephyperx.config import experiment_id, to_yaml
from deephyperx.errors import TrainingDiverged, UserError, divergence_hint
from deephyperx.experiment_lock import claim_seeds, experiment_lock, remove_empty_folders, remove_unheld_files
from deephyperx.file_monitor import FileMonitor
from deephyperx.metrics import aggregate_runs
from deephyperx.monitor import ConsoleMonitor, JsonLinesMonitor, Monitor, Monitors, trim_records
from deephyperx.reports import aggregate_markdown, load_json, save_json
from deephyperx.run_environment import record_environment
from deephyperx.seeding import seed_everything
from deephyperx.training import Trainer, TrainingState

#: The caller's monitors of one seed (visdom, TensorBoard), made per seed.
MonitorsPerSeed = Callable[[int], list[Monitor]]


# ----- one seed ------------------------------------------------------------------------------------

@dataclass
class SeedRun:
    """One seed of an experiment as the skeleton runs it. The task reads the seed, the folders, the
    settings, the checkpoint to resume from and the monitors, and finds in ``parts`` what its
    :meth:`Task.prepare` built."""

    seed: int
    #: the seed's folder (``<experiment>/seed<N>``), written as :attr:`partial` and renamed when complete
    final: Path
    #: this seed's settings, recorded in its folder (``prepare`` may complete them)
    config: dict[str, Any]
    extra_monitors: list[Monitor] = field(default_factory=list)
    #: tests: stop training after this epoch, as an interruption would
    stop_after_epoch: Optional[int] = None
    #: what :meth:`Task.prepare` returned
    parts: Any = None
    #: the checkpoint found in :attr:`partial` to go on from (None: a fresh start)
    resume: Optional[dict] = None
    #: every monitor of the run (none on torchrun's other ranks)
    monitor: Monitor = field(default_factory=lambda: Monitors([]))
    #: (position, count): this seed is the position-th of the count seeds its command trains
    of_seeds: tuple[int, int] = (1, 1)

    @property
    def partial(self) -> Path:
        return self.final.with_name(self.final.name + ".partial")

    @property
    def checkpoint(self) -> Path:
        """Where training checkpoints; it becomes ``model.pt`` once every report is written."""
        return self.partial / "checkpoint.pt"

    def train(self, trainer: Trainer) -> Optional[TrainingState]:
        """Train ``trainer`` (checkpointing to :attr:`checkpoint`) from the checkpoint this seed resumes
        from, if any; None when stopped early (:attr:`stop_after_epoch`), the partial folder left to resume."""
        if self.resume is not None:
            trainer.load_state_dict(self.resume)
            self.monitor.text(f"resuming {self.final.name} from epoch {self.resume['epoch']} ({self.partial})")
        state = trainer.fit(self.stop_after_epoch)
        return None if state.epoch < int(self.config["epoch"]) and not state.stopped_early else state

    def keep_model(self, trainer: Trainer) -> None:
        """Checkpoint the model when training wrote no checkpoint (restored, ``--epoch 0``)."""
        if not self.checkpoint.is_file():
            ckpt.save_checkpoint(self.checkpoint, trainer.state_dict())


class Task(ABC):
    """What differs between experiments. A task sets ``name`` (what it runs on: a scene, a tile set, a
    catalogue), ``model``, ``class_names`` and ``config`` (the experiment's settings, with ``seed``,
    and ``runs`` for :meth:`Experiment.run`), and says how one seed fits, evaluates and reports."""

    name: str
    model: str
    class_names: Sequence[str]
    config: dict[str, Any]
    #: per-seed facts kept in ``results.json`` beside the aggregate
    run_facts: Sequence[str] = ("seed", "overall_accuracy", "average_accuracy", "kappa")

    @abstractmethod
    def experiment_folder(self) -> Path:
        """The experiment's folder, one per distinct experiment; seeds go in ``seed<N>/`` inside."""

    def seed_config(self, seed: int) -> dict[str, Any]:
        """The settings of one seed's run."""
        return {**self.config, "seed": seed}

    @abstractmethod
    def prepare(self, run: SeedRun) -> Any:
        """Check the input and build what the seed needs (split, restored checkpoint, model) before
        any folder exists, raising :class:`UserError` on bad input; may complete ``run.config``.
        Returns the parts, kept in ``run.parts``."""

    def resumable(self, run: SeedRun) -> bool:
        """Whether an interrupted run goes on from the checkpoint in its partial folder."""
        return True

    def epochs(self, run: SeedRun) -> Optional[int]:
        """The epochs the console counts (None: the model trains in one go)."""
        return run.config.get("epoch")

    def monitors(self, run: SeedRun) -> list[Monitor]:
        """The task's own monitors: its file monitor (figures and ``report.html`` in the folder)."""
        return [FileMonitor(run.partial)]

    def description(self, run: SeedRun) -> dict[str, Any]:
        """What the monitors are told when the run starts."""
        return {"run": f"{self.name}_{self.model}_seed{run.seed}", "scene": self.name, "model": self.model,
                "seed": run.seed, "class_names": self.class_names, "config": run.config, "folder": str(run.final)}

    @abstractmethod
    def fit_and_report(self, run: SeedRun) -> Optional[dict[str, Any]]:
        """Fit (:meth:`SeedRun.train` resumes and checkpoints), evaluate and write the task's reports
        into ``run.partial``; the run's metrics, or None when stopped early (tests) and on torchrun's
        other ranks, which only train."""

    def summarise(self, runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Mean ± std over the metrics of several seeds."""
        return aggregate_runs(runs)

    def results_markdown(self, title: str, aggregate: dict[str, Any], commands: Optional[list[str]]) -> str:
        """``results.md``: the aggregate of several seeds in words."""
        return aggregate_markdown(title, aggregate, self.class_names, commands)


class Experiment:
    """A :class:`Task` run seed by seed into its experiment folder."""

    def __init__(self, task: Task):
        self.task = task
        self._folder: Optional[Path] = None

    @property
    def folder(self) -> Path:
        if self._folder is None:
            self._folder = self.task.experiment_folder()
        return self._folder

    def run_seed(self, seed: int, final: Optional[Path] = None, extra_monitors: Optional[list[Monitor]] = None,
                 stop_after_epoch: Optional[int] = None,
                 of_seeds: tuple[int, int] = (1, 1)) -> Optional[dict[str, Any]]:
        """Run one seed into ``final`` (default ``<folder>/seed<seed>``), written as ``final.partial``
        and renamed when complete; its metrics (None when stopped at ``stop_after_epoch``, tests).
        ``of_seeds`` (position, count) places it among the seeds its command trains (the console's estimate)."""
        task = self.task
        run = SeedRun(seed, Path(final) if final is not None else self.folder / f"seed{seed}", task.seed_config(seed),
                      list(extra_monitors or []), stop_after_epoch, of_seeds=of_seeds)
        seed_everything(seed)
        run.parts = task.prepare(run)  # bad input fails before any folder exists
        main = distributed.is_main()
        # rank 0 alone prepares the folder; every rank resumes from the checkpoint it found there
        run.resume = distributed.broadcast_object(
            resume_partial_folder(run.partial, run.config, seed, task.resumable(run)) if main else None)
        try:
            metrics = self._fit_and_publish(run) if main else task.fit_and_report(run)
            return distributed.broadcast_object(metrics if main else None)
        except UserError:
            if main:
                discard_unresumable_partial(run.partial)
            raise

    def _fit_and_publish(self, run: SeedRun) -> Optional[dict[str, Any]]:
        task = self.task
        run.monitor = Monitors([ConsoleMonitor(task.epochs(run), seeds=run.of_seeds),
                                JsonLinesMonitor(run.partial / "metrics.jsonl"),
                                *task.monitors(run), *run.extra_monitors])
        run.monitor.run_started(task.description(run))
        metrics = task.fit_and_report(run)
        if metrics is None:  # stopped early: the partial folder stays, as an interruption leaves it
            return None
        run.monitor.run_ended(metrics)
        if run.checkpoint.is_file():  # the last checkpoint becomes the model only once all is written,
            os.replace(run.checkpoint, run.partial / "model.pt")  # so a failure resumes from it
        replace_directory(run.partial, run.final)
        return metrics

    def run_claimed(self, seed: int, command: Optional[str] = None, flags: str = "--seed or --out",
                    extra_monitors: Optional[list[Monitor]] = None,
                    stop_after_epoch: Optional[int] = None) -> Optional[dict[str, Any]]:
        """One seed, claimed for the time of its run (a command of one seed): another process running
        it stops this one with one line naming it and ``flags`` to change."""
        with claimed_seeds(self.folder, [seed], command, flags):
            return self.run_seed(seed, extra_monitors=extra_monitors, stop_after_epoch=stop_after_epoch)

    def run(self, command: Optional[str] = None, extra_monitors: Optional[MonitorsPerSeed] = None,
            reuse_finished: bool = False, finished_only: bool = False) -> Optional[dict[str, Any]]:
        """``config['runs']`` seeds ``seed, seed+1, ...``; their aggregate (None when none finished).

        With ``reuse_finished``, a seed whose folder is complete (or recorded as diverged) is read back
        instead of run again; an interrupted seed resumes from its checkpoint either way. With
        ``finished_only`` nothing is trained: the finished seeds alone are aggregated.

        The seeds to train are claimed before any work. ``results.json`` and ``results.md`` aggregate
        every seed finished in the folder, whichever command ran it; the returned aggregate covers
        this command's seeds. A seed whose training diverges is recorded in ``seed<N>.diverged.json``
        and left out of the aggregate, which lists it under ``diverged``; when every seed diverged,
        :class:`EverySeedDiverged` is raised."""
        task, folder = self.task, self.folder
        reuse_finished = reuse_finished or finished_only
        main = distributed.is_main()
        seeds = [int(task.config["seed"]) + i for i in range(task.config["runs"])]
        to_train = [] if finished_only else [s for s in seeds if not (reuse_finished and main and settled(folder, s))]
        runs: list[dict[str, Any]] = []
        diverged: list[dict[str, Any]] = []
        with claimed_seeds(folder, to_train, command):
            for seed in seeds:
                done, marker = folder / f"seed{seed}" / "metrics.json", diverged_marker(folder, seed)
                if reuse_finished:  # rank 0 reads the finished run (or its divergence) and tells the others
                    finished = distributed.broadcast_object(load_json(done) if main and done.is_file() else None)
                    if finished is not None:
                        runs.append(finished)
                        continue
                    known = distributed.broadcast_object(load_json(marker) if main and marker.is_file() else None)
                    if known is not None:
                        diverged.append(known)
                        continue
                if finished_only:
                    continue
                monitors = extra_monitors(seed) if extra_monitors and main else None
                of_seeds = (to_train.index(seed) + 1, len(to_train)) if seed in to_train else (1, 1)
                try:
                    runs.append(self.run_seed(seed, extra_monitors=monitors, of_seeds=of_seeds))
                except TrainingDiverged as error:
                    record = {"seed": seed, **error.as_record()}
                    if main:
                        save_json(marker, record)
                    if main and len(seeds) > 1:  # one seed's failure among several: say it, go on
                        print(f"{error} (seed {seed}; recorded in {marker}: delete it to train this seed again)",
                              file=sys.stderr)
                    diverged.append(record)
                else:
                    if main:  # finished now: an older divergence of this seed no longer holds
                        marker.unlink(missing_ok=True)
            if main:
                self.write_results(command)
        if not runs:
            if diverged:
                raise EverySeedDiverged(task.config["model"], task.name, diverged)
            return None
        return self.aggregate(runs, diverged, command)

    def aggregate(self, runs: list[dict[str, Any]], diverged: list[dict[str, Any]],
                  command: Optional[str]) -> dict[str, Any]:
        """Mean ± std over ``runs`` and the facts of each, with the ``diverged`` seeds listed apart."""
        task = self.task
        aggregate = task.summarise(runs)
        aggregate.update({"scene": task.name, "model": task.config["model"], "folder": str(self.folder),
                          "command": command, "config": task.config,
                          "runs": [{k: run.get(k) for k in task.run_facts} for run in runs]})
        if diverged:
            aggregate["diverged"] = diverged
        return aggregate

    def write_results(self, command: Optional[str]) -> None:
        """Under the folder's lock, write ``results.json`` and ``results.md`` from every seed finished in
        the folder, by this command or by another (nothing when none has finished)."""
        folder = self.folder
        if not folder.is_dir():
            return
        with experiment_lock(folder):
            runs, diverged = settled_seeds(folder)
            if not runs:
                return
            aggregate = self.aggregate(runs, diverged, command)
            aggregate["commands"] = recorded_commands(folder / "results.json", command)
            save_json(folder / "results.json", aggregate)
            text = self.task.results_markdown(f"{self.task.config['model']} on {self.task.name}", aggregate,
                                              aggregate["commands"] or None)
            text += (f"\nThese are the seeds finished in {folder.name}/, whichever command ran them (the commands "
                     "above ran this experiment); a command's printed line covers only the seeds it ran.\n")
            if diverged:
                text += f"\nLeft out of the means: training diverged in {describe_divergences(diverged)}.\n"
            atomic_write_text(folder / "results.md", text)


# ----- partial folders -------------------------------------------------------------------------------

def open_partial_folder(partial: Path, config: dict[str, Any], seed: int) -> None:
    """Keep ``partial`` when it holds a run of the same experiment and seed (to resume from it),
    else start it afresh; record the identity and the configuration in it."""
    saved, identity = partial / "identity.txt", f"{experiment_id(config)} seed {seed}"
    if partial.exists() and not (saved.is_file() and saved.read_text() == identity):
        shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    atomic_write_text(saved, identity)
    atomic_write_text(partial / "config.yaml", to_yaml(config))


def resume_partial_folder(partial: Path, config: dict[str, Any], seed: int, resumable: bool = True) -> Optional[dict]:
    """Open ``partial`` (see :func:`open_partial_folder`) and return the checkpoint to resume from,
    with the metrics log trimmed back to it; None, and no log, when there is none (or the run is
    not ``resumable``)."""
    open_partial_folder(partial, config, seed)
    checkpoint, finished = partial / "checkpoint.pt", partial / "model.pt"
    if resumable and not checkpoint.is_file() and finished.is_file():  # training ended, the reports did not
        os.replace(finished, checkpoint)
    state = ckpt.load_checkpoint(checkpoint) if resumable and checkpoint.is_file() else None
    continue_records(partial, state, config)
    return state


def continue_records(partial: Path, state: Optional[dict], config: dict[str, Any]) -> None:
    """Bring ``partial``'s records to the checkpoint ``state`` a run goes on from: the metrics log
    trimmed back to it, or removed for a fresh start (``state`` None); and this process's
    environment added to ``environment.jsonl``."""
    if state is None:
        (partial / "metrics.jsonl").unlink(missing_ok=True)
    else:
        trim_records(partial / "metrics.jsonl", state["step"], state["epoch"])
    record_environment(partial, None if state is None else state["epoch"], config.get("cuda"))


def discard_unresumable_partial(partial: Path) -> None:
    """After a run failed on bad input: remove ``partial`` unless it holds a checkpoint to resume
    from (a checkpoint, or the model of a finished training whose reports could not be written), and its
    experiment folder too when nothing but lock and owner files nobody holds is left in it (a failed run
    leaves no trace)."""
    if (partial / "checkpoint.pt").is_file() or (partial / "model.pt").is_file():
        return
    shutil.rmtree(partial, ignore_errors=True)
    folder = partial.parent
    if not folder.is_dir():
        return
    # Under the folder's lock, as claims are taken: a process starting the same experiment now either
    # claimed first (its lock file keeps the folder) or finds the folder gone and makes it anew. While
    # this process claims seeds of the folder, its own held locks keep it; the claim's end removes it.
    with experiment_lock(folder):
        if remove_unheld_files(folder):
            remove_empty_folders([folder])


# ----- seeds of an experiment folder ---------------------------------------------------------------

@contextlib.contextmanager
def claimed_seeds(folder: Path, seeds: list[int], command: Optional[str],
                  flags: str = "--seed or --out") -> Iterator[None]:
    """Claim ``seeds`` of ``folder`` for the time of the block (see
    :func:`~deephyperx.experiment_lock.claim_seeds`; nothing when ``seeds`` is empty). Under torchrun
    rank 0 alone touches folders, so it alone claims, and every rank learns whether it could."""
    if not distributed.active():
        with claim_seeds(folder, seeds, command, flags) if seeds else contextlib.nullcontext():
            yield
        return
    with contextlib.ExitStack() as stack:
        refusal = None
        if distributed.is_main() and seeds:
            try:
                stack.enter_context(claim_seeds(folder, seeds, command, flags))
            except UserError as error:
                refusal = str(error)
        refusal = distributed.broadcast_object(refusal)
        if refusal is not None:
            raise UserError(refusal)
        yield


class EverySeedDiverged(UserError):
    """No seed of an experiment finished: each one's training diverged (nan or infinite loss or weights)."""

    def __init__(self, model: str, scene: str, diverged: list[dict[str, Any]]):
        self.model, self.scene, self.diverged = model, scene, diverged
        super().__init__(f"{model} on {scene}: every seed diverged ({describe_divergences(diverged)}); "
                         f"{divergence_hint(diverged[-1].get('lr'))}")


def describe_divergences(diverged: list[dict[str, Any]]) -> str:
    """The diverged seeds' records in words: ``seed 0 at epoch 12 (loss nan); seed 3 at ...``."""
    return "; ".join(f"seed {d['seed']} at epoch {d['epoch']} (loss {d['loss']})" for d in diverged)


def diverged_marker(folder: Path, seed: int) -> Path:
    """The file recording that a seed's training diverged (read back by a resumed benchmark)."""
    return folder / f"seed{seed}.diverged.json"


def settled(folder: Path, seed: int) -> bool:
    """Whether a seed of the experiment in ``folder`` finished or is recorded as diverged."""
    return (folder / f"seed{seed}" / "metrics.json").is_file() or diverged_marker(folder, seed).is_file()


SEED_FOLDER = re.compile(r"seed(\d+)")
DIVERGED_FILE = re.compile(r"seed(\d+)\.diverged\.json")


def settled_seeds(folder: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The metrics of every seed finished in an experiment folder (``seed<N>/metrics.json``) and the
    records of every seed diverged (``seed<N>.diverged.json``) and not finished since, in seed order."""
    finished: dict[int, dict[str, Any]] = {}
    for path in folder.glob("seed*/metrics.json"):
        match = SEED_FOLDER.fullmatch(path.parent.name)
        if match is not None:
            finished[int(match.group(1))] = load_json(path)
    diverged: dict[int, dict[str, Any]] = {}
    for path in folder.glob("seed*.diverged.json"):
        match = DIVERGED_FILE.fullmatch(path.name)
        if match is not None and int(match.group(1)) not in finished:
            diverged[int(match.group(1))] = load_json(path)
    return [finished[s] for s in sorted(finished)], [diverged[s] for s in sorted(diverged)]


def recorded_commands(results: Path, command: Optional[str]) -> list[str]:
    """The commands an experiment's ``results.json`` names (each once, oldest first), then ``command``."""
    try:
        previous = load_json(results) if results.is_file() else {}
    except (OSError, ValueError, UserError):
        previous = {}
    known = previous.get("commands") if isinstance(previous, dict) else None
    if not isinstance(known, list):
        known = [previous.get("command")] if isinstance(previous, dict) else []
    return [c for c in dict.fromkeys([*known, command]) if isinstance(c, str) and c]
