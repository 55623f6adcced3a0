"""The model registry: models declare themselves with :func:`register_model` and are built by name.

A registration carries the model's paper defaults (patch size, epochs, batch size,
optimiser, learning rate, scheduler, loss, supervision kind, output kind, number of
inputs). Building a model passes only the arguments its factory accepts, and
arguments that are ``None`` are dropped so that an unset command-line flag never
overrides a model default (as timm's ``create_model`` does).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from deephyperx import entry_points
from deephyperx.errors import UserError
from deephyperx.settings import defaults
from deephyperx.shared_settings import ModelDefaults

#: Training settings every model has (declared in :class:`~deephyperx.shared_settings.ModelDefaults`);
#: a registration overrides what its paper says.
ENGINE_DEFAULTS: dict[str, Any] = defaults(ModelDefaults)

#: Run settings a registration may also fix, when its paper's protocol says so (e.g. HybridSN
#: trains on every training pixel: ``val_fraction=0``).
MODEL_RUN_SETTINGS = frozenset({"val_fraction"})

#: neural: pixel/patch classifiers run by ``main.py``; sklearn: scikit-learn baselines;
#: generator: conditional spectrum generators run by ``main.py generate``;
#: segmentation: image-to-label-map networks for aerial tiles run by ``main.py segment``.
FAMILIES = ("neural", "sklearn", "generator", "segmentation")

#: The sub-command that runs each family (for the error a wrong one gets).
FAMILY_COMMANDS = {"neural": "main.py", "sklearn": "main.py", "generator": "main.py generate",
                   "segmentation": "main.py segment"}

#: Factory arguments the engine supplies itself; the others are the model's own options.
ENGINE_SUPPLIED = frozenset({"n_bands", "n_classes", "patch_size", "seed", "class_balancing", "n_jobs", "channels"})


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows of one model."""

    name: str
    factory: Callable[..., Any]
    family: str
    citation: str
    defaults: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def training_defaults(self) -> dict[str, Any]:
        """Engine defaults overridden by this model's own."""
        merged = dict(ENGINE_DEFAULTS)
        merged.update(self.defaults)
        return merged

    def model_arguments(self) -> dict[str, Any]:
        """Keyword arguments of the factory with their default values (architecture options)."""
        params = inspect.signature(self.factory).parameters
        return {k: p.default for k, p in params.items()
                if p.default is not inspect.Parameter.empty and p.kind is p.KEYWORD_ONLY
                and k not in ENGINE_SUPPLIED}


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, *, family: str = "neural", citation: str, description: str = "",
                   **defaults: Any) -> Callable:
    """Class or function decorator that registers a model factory under ``name``.

    Neural factories are called as ``factory(n_bands=, n_classes=, patch_size=, **options)``
    and return a ``torch.nn.Module``; scikit-learn factories as ``factory(n_classes=, seed=,
    **options)`` and return an estimator. ``defaults`` are training settings (see
    :data:`ENGINE_DEFAULTS`) and the run settings of :data:`MODEL_RUN_SETTINGS`.
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, not {family!r}")
    unknown = set(defaults) - set(ENGINE_DEFAULTS) - MODEL_RUN_SETTINGS
    if unknown:
        raise ValueError(f"{name}: unknown training defaults {sorted(unknown)}")

    def decorator(factory: Callable) -> Callable:
        if name in _REGISTRY and _REGISTRY[name].factory is not factory:
            raise ValueError(f"model {name!r} is registered twice")
        doc = description or first_sentence(inspect.getdoc(factory) or "")
        _REGISTRY[name] = ModelSpec(name, factory, family, citation, dict(defaults), doc)
        return factory

    return decorator


def first_sentence(docstring: str) -> str:
    """The first sentence of a docstring's first paragraph, on one line."""
    paragraph = " ".join(docstring.split("\n\n")[0].split())
    head, dot, _ = paragraph.partition(". ")
    return head + "." if dot else paragraph


#: Entry-point group of the packages that register models (``[project.entry-points."deephyperx.plugins"]``):
#: each entry names a module whose import registers its models.
PLUGIN_GROUP = "deephyperx.plugins"
_plugins_loaded = False


def load_plugins() -> None:
    """Import, once, every module an installed package declares in :data:`PLUGIN_GROUP`, so that the
    registry holds the whole zoo however the package was imported (a front end that wires its zoo in
    itself, as ``main.py`` does in a source tree, needs none)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True  # before loading: a plugin's own imports of the registry must not recurse
    for entry in entry_points.declared(PLUGIN_GROUP):
        try:
            entry_points.load(entry)  # a source tree's `models` already imported is not imported again
        except Exception as error:  # a broken plugin says which, instead of hiding the rest of the zoo
            raise UserError(f"the model plugin '{entry.name}' ({entry.value}) failed to load: {error}") from None


def list_models(family: str | None = None) -> list[str]:
    """Registered model names, sorted, optionally of one family."""
    load_plugins()
    return sorted(n for n, s in _REGISTRY.items() if family is None or s.family == family)


def get_spec(name: str) -> ModelSpec:
    """The registration of ``name``; a :class:`UserError` listing the choices if unknown."""
    load_plugins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UserError(f"unknown model '{name}'; choose one of: {', '.join(list_models())}") from None


def create_model(name: str, **kwargs: Any) -> Any:
    """Build model ``name``; ``None`` values are dropped and unknown keywords are ignored
    unless the factory takes ``**kwargs``."""
    spec = get_spec(name)
    params = inspect.signature(spec.factory).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    accepted = {k: v for k, v in kwargs.items() if v is not None and (takes_any or k in params)}
    try:
        return spec.factory(**accepted)
    except (TypeError, ValueError) as error:  # an option value the architecture cannot take
        detail = " ".join(str(error).split())[:160] or type(error).__name__
        raise UserError(f"model {name} cannot be built with these options ({detail}); check its model_args "
                        f"(python main.py list --markdown shows each model's defaults)") from None


def require_family(spec: ModelSpec, families: tuple[str, ...], command: str) -> None:
    """Refuse a model of another family than ``command`` runs, naming the command that runs it."""
    if spec.family not in families:
        raise UserError(f"model {spec.name} is a {spec.family} model, which `{command}` does not run; "
                        f"use `{FAMILY_COMMANDS[spec.family]} --model {spec.name}`")


def chosen_model(name: str | None, families: tuple[str, ...], command: str) -> ModelSpec:
    """The registration of the model ``command`` was given (``--model`` or its config file's
    ``model``), refused with the choices when missing and with the right command when of another
    family."""
    if not name:
        choices = [n for n in list_models() if _REGISTRY[n].family in families]
        raise UserError(f"no --model given; choose one of: {', '.join(choices)}")
    spec = get_spec(name)
    require_family(spec, families, command)
    return spec


def require_single_spectra(model: str, patch_size: int) -> None:
    """For models that classify one spectrum: refuse a patch size other than 1."""
    if patch_size != 1:
        raise UserError(f"model {model} classifies single spectra, not {patch_size}x{patch_size} patches; "
                        "drop --patch_size or choose a spatial model")
