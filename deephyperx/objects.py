"""Segment-before-detect: objects (vehicles, buildings, any class) from a segmentation map.

Audebert, Le Saux and Lefèvre, "Segment-before-detect: vehicle detection and classification
through semantic segmentation of aerial images", Remote Sensing 9(4):368, 2017. A dense
classifier labels every pixel; the objects of one class are then the connected components of
that class's mask, each with its bounding box, its size in pixels, its centroid and a
confidence score (the mean probability of the class over the object's pixels). Components
smaller than a minimum size are dropped, as the paper does to remove isolated noisy pixels.

Object-level scores compare predicted objects to ground-truth objects (themselves the
connected components of a label map, see :func:`objects_from_labels`) by a one-to-one greedy
matching, highest score first, on box IoU or pixel IoU: precision, recall and F1 over objects.

Conventions: boxes are ``(row0, col0, row1, col1)`` with ``row1``/``col1`` exclusive, so the
box covers pixel rows ``row0..row1-1``; centroids are ``(row, col)`` means of pixel indices.
Map coordinates use a GeoTIFF affine transform ``(a, b, c, d, e, f)`` (the ``affine``/rasterio
order): ``x = a * col + b * row + c`` and ``y = d * col + e * row + f`` for the *corner*
coordinates of pixels, so pixel ``(r, c)`` has its centre at ``(c + 0.5, r + 0.5)``.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
from scipy import ndimage

from deephyperx.atomic import atomic_write_text
from deephyperx.errors import UserError
from deephyperx.scene import IGNORE

PathLike = Union[str, Path]
Box = tuple[int, int, int, int]
Transform = tuple[float, float, float, float, float, float]

#: Class names of the ISPRS 2D semantic labelling benchmark, the default for ``--class`` names.
ISPRS_CLASSES = ["impervious surfaces", "building", "low vegetation", "tree", "car", "clutter"]

#: Columns of the CSV file, in order (the map-coordinate ones only with a transform).
CSV_COLUMNS = ["id", "class_id", "class", "row0", "col0", "row1", "col1", "pixels",
               "centroid_row", "centroid_col", "score"]


@dataclass
class DetectedObject:
    """One connected component of a class.

    ``mask`` is the component's boolean mask inside its box (shape ``(row1-row0, col1-col0)``),
    kept for pixel-overlap matching; it is left out of comparisons and the repr.
    """

    id: int
    class_id: int
    bbox: Box
    pixels: int
    centroid: tuple[float, float]
    score: Optional[float] = None
    mask: Optional[np.ndarray] = field(default=None, repr=False, compare=False)

    @property
    def box_area(self) -> int:
        row0, col0, row1, col1 = self.bbox
        return (row1 - row0) * (col1 - col0)


# --- extraction ---------------------------------------------------------------------------


def extract_objects(label_map: np.ndarray, class_id: int, scores: Optional[np.ndarray] = None,
                    min_pixels: int = 1, connectivity: int = 8, opening: int = 0) -> list[DetectedObject]:
    """The connected components of ``class_id`` in ``label_map`` (H, W), as objects.

    ``scores`` is the class probability map, (H, W) for this class or all classes as (K, H, W)
    or (H, W, K); an object's score is its mean over the object's pixels. ``connectivity`` is
    4 (edge neighbours) or 8 (edges and corners). ``opening`` > 0 first removes bridges thinner
    than about ``2 * opening + 1`` pixels (a binary opening by a disk), which separates
    touching vehicles. Components of fewer than ``min_pixels`` pixels are dropped; ids are
    1, 2, ... in raster order of the components' first pixels.
    """
    label_map = _check_label_map(label_map)
    mask = label_map == class_id
    if opening > 0:
        mask = ndimage.binary_opening(mask, structure=_disk(opening))
    probability = _class_probability(scores, class_id, label_map.shape) if scores is not None else None
    return _components(mask, class_id, probability, _check_min_pixels(min_pixels), connectivity)


def objects_from_labels(label_map: np.ndarray, class_id: int, min_pixels: int = 1,
                        connectivity: int = 8) -> list[DetectedObject]:
    """Ground-truth objects: the connected components of ``class_id`` in a label map, unscored.

    With eroded ground truth (ISPRS "noBoundary"), boundaries are :data:`IGNORE`, which keeps
    touching vehicles apart, so each vehicle is one object.
    """
    return extract_objects(label_map, class_id, None, min_pixels=min_pixels, connectivity=connectivity)


def _components(mask: np.ndarray, class_id: int, probability: Optional[np.ndarray],
                min_pixels: int, connectivity: int) -> list[DetectedObject]:
    """Label the mask and measure every component with vectorised bincounts."""
    components, count = ndimage.label(mask, structure=_structure(connectivity))
    if count == 0:
        return []
    flat = components.ravel()
    sizes = np.bincount(flat, minlength=count + 1)
    rows, cols = np.indices(mask.shape)
    row_sums = np.bincount(flat, weights=rows.ravel(), minlength=count + 1)
    col_sums = np.bincount(flat, weights=cols.ravel(), minlength=count + 1)
    score_sums = (np.bincount(flat, weights=probability.ravel().astype(np.float64), minlength=count + 1)
                  if probability is not None else None)
    objects: list[DetectedObject] = []
    for index, slices in enumerate(ndimage.find_objects(components), start=1):
        if slices is None or sizes[index] < min_pixels:
            continue
        rows_slice, cols_slice = slices
        objects.append(DetectedObject(
            id=len(objects) + 1,
            class_id=int(class_id),
            bbox=(rows_slice.start, cols_slice.start, rows_slice.stop, cols_slice.stop),
            pixels=int(sizes[index]),
            centroid=(float(row_sums[index] / sizes[index]), float(col_sums[index] / sizes[index])),
            score=float(score_sums[index] / sizes[index]) if score_sums is not None else None,
            mask=components[slices] == index,
        ))
    return objects


def _structure(connectivity: int) -> np.ndarray:
    """The neighbourhood of ``ndimage.label``: 4 = edges only, 8 = edges and corners."""
    if connectivity == 4:
        return ndimage.generate_binary_structure(2, 1)
    if connectivity == 8:
        return ndimage.generate_binary_structure(2, 2)
    raise UserError(f"connectivity {connectivity!r} is not supported; use 4 or 8")


def _disk(radius: int) -> np.ndarray:
    """A disk-shaped structuring element of the given radius in pixels."""
    rows, cols = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return rows ** 2 + cols ** 2 <= radius ** 2


def _check_label_map(label_map: np.ndarray) -> np.ndarray:
    label_map = np.asarray(label_map)
    if label_map.ndim != 2:
        raise UserError(f"the label map has shape {label_map.shape}; give a 2-D (rows, cols) map of class ids")
    if label_map.dtype.kind not in "biu":
        raise UserError(f"the label map holds {label_map.dtype} values; give integer class ids")
    return label_map


def _check_min_pixels(min_pixels: int) -> int:
    if int(min_pixels) < 1:
        raise UserError(f"min_pixels {min_pixels!r} must be at least 1")
    return int(min_pixels)


def _class_probability(scores: np.ndarray, class_id: int, shape: tuple[int, int]) -> np.ndarray:
    """The (H, W) probability map of ``class_id`` out of (H, W), (K, H, W) or (H, W, K) scores."""
    scores = np.asarray(scores)
    if scores.shape == shape:
        return scores
    if scores.ndim == 3 and scores.shape[1:] == shape and 0 <= class_id < scores.shape[0]:
        return scores[class_id]
    if scores.ndim == 3 and scores.shape[:2] == shape and 0 <= class_id < scores.shape[2]:
        return scores[:, :, class_id]
    raise UserError(
        f"the score map has shape {scores.shape} but the label map is {shape[0]}x{shape[1]} and the class is "
        f"{class_id}; give the class's probabilities as (H, W), or all classes as (K, H, W) or (H, W, K)"
    )


# --- writing ------------------------------------------------------------------------------


def write_objects_csv(path: PathLike, objects: Sequence[DetectedObject], transform: Optional[Transform] = None,
                      class_names: Optional[Sequence[str]] = None) -> Path:
    """Write one row per object (columns :data:`CSV_COLUMNS`, plus ``centroid_x, centroid_y`` in
    map coordinates when ``transform`` is given); an empty score cell means unscored."""
    columns = CSV_COLUMNS + (["centroid_x", "centroid_y"] if transform is not None else [])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for obj in objects:
        row = [obj.id, obj.class_id, _class_name(obj.class_id, class_names), *obj.bbox, obj.pixels,
               f"{obj.centroid[0]:.3f}", f"{obj.centroid[1]:.3f}", "" if obj.score is None else f"{obj.score:.6f}"]
        if transform is not None:
            x, y = apply_transform(transform, obj.centroid[1] + 0.5, obj.centroid[0] + 0.5)
            row += [repr(x), repr(y)]
        writer.writerow(row)
    atomic_write_text(path, buffer.getvalue())
    return Path(path)


def write_objects_geojson(path: PathLike, objects: Sequence[DetectedObject], transform: Optional[Transform] = None,
                          class_names: Optional[Sequence[str]] = None, crs: Optional[str] = None) -> Path:
    """Write a GeoJSON FeatureCollection, one box polygon per object.

    Coordinates are pixel corners ``(col, row)`` without ``transform``, map coordinates with it.
    Properties: ``id``, ``class`` (the name when ``class_names`` is given, else the id),
    ``class_id``, ``pixels``, ``score`` (null when unscored), ``centroid`` ([x, y]). ``crs`` such
    as ``"EPSG:32616"`` adds the (pre-RFC 7946) ``crs`` member that GIS tools read.
    """
    features = [_feature(obj, transform, class_names) for obj in objects]
    collection: dict = {"type": "FeatureCollection", "features": features}
    if crs is not None:
        collection["crs"] = {"type": "name", "properties": {"name": _crs_urn(crs)}}
    atomic_write_text(path, json.dumps(collection, indent=1) + "\n")
    return Path(path)


def _feature(obj: DetectedObject, transform: Optional[Transform], class_names: Optional[Sequence[str]]) -> dict:
    row0, col0, row1, col1 = obj.bbox
    corners = [(col0, row0), (col1, row0), (col1, row1), (col0, row1)]
    ring = [_point(transform, col, row) for col, row in corners]
    if _signed_area(ring) < 0:  # GeoJSON exterior rings run counterclockwise
        ring.reverse()
    ring.append(ring[0])
    return {
        "type": "Feature",
        "id": obj.id,
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {
            "id": obj.id,
            "class": _class_name(obj.class_id, class_names),
            "class_id": obj.class_id,
            "pixels": obj.pixels,
            "score": obj.score,
            "centroid": _point(transform, obj.centroid[1] + 0.5, obj.centroid[0] + 0.5),
        },
    }


def _point(transform: Optional[Transform], col: float, row: float) -> list[float]:
    if transform is None:
        return [float(col), float(row)]
    return list(apply_transform(transform, col, row))


def apply_transform(transform: Transform, col: float, row: float) -> tuple[float, float]:
    """Map coordinates ``(x, y)`` of the pixel-corner position ``(col, row)``."""
    a, b, c, d, e, f = (float(v) for v in _check_transform(transform))
    return a * col + b * row + c, d * col + e * row + f


def _check_transform(transform: Transform) -> Transform:
    values = tuple(transform)
    if len(values) != 6 or not all(isinstance(v, (int, float, np.number)) and math.isfinite(v) for v in values):
        raise UserError(f"affine transform {transform!r} must be six finite numbers (a, b, c, d, e, f)")
    return values  # type: ignore[return-value]


def _signed_area(ring: list[list[float]]) -> float:
    """Shoelace area: positive when the ring runs counterclockwise (x right, y up)."""
    return 0.5 * sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:] + ring[:1]))


def _class_name(class_id: int, class_names: Optional[Sequence[str]]) -> Union[str, int]:
    if class_names is not None and 0 <= class_id < len(class_names):
        return class_names[class_id]
    return class_id


def _crs_urn(crs: str) -> str:
    if crs.upper().startswith("EPSG:"):
        return f"urn:ogc:def:crs:EPSG::{crs.split(':', 1)[1]}"
    return crs


def geotiff_transform(path: PathLike) -> tuple[Transform, Optional[str]]:
    """The affine transform ``(a, b, c, d, e, f)`` and the CRS (``"EPSG:n"`` or None) of a GeoTIFF,
    from its ModelTransformation or ModelPixelScale + ModelTiepoint tags (read with tifffile)."""
    import tifffile

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file; give the GeoTIFF whose grid the map was predicted on")
    with tifffile.TiffFile(path) as tif:
        tags = {tag.code: tag.value for tag in tif.pages[0].tags.values()}
    keys = _geokeys(tags.get(34735))
    if 34264 in tags:
        m = [float(v) for v in tags[34264]]
        transform: Transform = (m[0], m[1], m[3], m[4], m[5], m[7])
    elif 33550 in tags and 33922 in tags:
        scale_x, scale_y = float(tags[33550][0]), float(tags[33550][1])
        i, j, _, x, y, _ = (float(v) for v in tags[33922][:6])
        transform = (scale_x, 0.0, x - i * scale_x, 0.0, -scale_y, y + j * scale_y)
    else:
        raise UserError(f"{path}: no georeferencing tags (ModelTransformation or ModelPixelScale + ModelTiepoint); "
                        "give a GeoTIFF, or write pixel coordinates")
    if keys.get(1025) == 2:  # RasterPixelIsPoint: the tie point is a pixel centre, not its corner
        a, b, c, d, e, f = transform
        transform = (a, b, c - 0.5 * (a + b), d, e, f - 0.5 * (d + e))
    epsg = keys.get(3072) or keys.get(2048)
    return transform, (f"EPSG:{epsg}" if epsg and epsg != 32767 else None)


def _geokeys(directory: Optional[Sequence[int]]) -> dict[int, int]:
    """Short (SHORT-valued) GeoKeys of a GeoKeyDirectory tag: key id -> value."""
    if directory is None:
        return {}
    values = [int(v) for v in directory]
    keys = {}
    for start in range(4, 4 + 4 * values[3], 4):
        key, location, _, value = values[start:start + 4]
        if location == 0:
            keys[key] = value
    return keys


# --- matching -----------------------------------------------------------------------------


def match_pairs(predicted: Sequence[DetectedObject], truth: Sequence[DetectedObject], iou_threshold: float = 0.5,
                overlap: str = "box") -> list[tuple[int, int, float]]:
    """One-to-one greedy matching: predictions in decreasing score order (unscored ones last,
    then larger first) each take the unmatched truth object of highest IoU, if that IoU is at
    least ``iou_threshold``. Returns ``(predicted id, truth id, iou)`` triples.

    ``overlap`` is ``"box"`` (IoU of the bounding boxes) or ``"pixel"`` (IoU of the pixel sets,
    which needs the objects' masks, as extraction gives them).
    """
    if not 0.0 < iou_threshold <= 1.0:
        raise UserError(f"IoU threshold {iou_threshold!r} must lie in (0, 1]")
    if not predicted or not truth:
        return []
    iou = _iou_matrix(predicted, truth, overlap)
    order = sorted(range(len(predicted)), key=lambda i: _priority(predicted[i]))
    taken = np.zeros(len(truth), dtype=bool)
    pairs = []
    for i in order:
        candidates = np.where(taken, -1.0, iou[i])
        j = int(np.argmax(candidates))
        if candidates[j] >= iou_threshold:
            taken[j] = True
            pairs.append((predicted[i].id, truth[j].id, float(candidates[j])))
    return pairs


def match_objects(predicted: Sequence[DetectedObject], truth: Sequence[DetectedObject], iou_threshold: float = 0.5,
                  overlap: str = "box") -> dict[str, float]:
    """Object-level precision, recall and F1 with TP/FP/FN counts (see :func:`match_pairs`).

    A matched prediction is a true positive; an unmatched prediction a false alarm (FP); an
    unmatched truth object a miss (FN). When a ratio has no denominator (nothing predicted, or
    nothing to find) it is 1.0 if both sets are empty and 0.0 otherwise.
    """
    tp = len(match_pairs(predicted, truth, iou_threshold, overlap))
    fp, fn = len(predicted) - tp, len(truth) - tp
    empty = 1.0 if not predicted and not truth else 0.0
    precision = tp / (tp + fp) if tp + fp else empty
    recall = tp / (tp + fn) if tp + fn else empty
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn,
            "predicted": len(predicted), "truth": len(truth)}


def _priority(obj: DetectedObject) -> tuple[float, float, int]:
    """Sort key: highest score first, unscored after scored, then larger objects, then id."""
    score = -obj.score if obj.score is not None else math.inf
    return score, -obj.pixels, obj.id


def _iou_matrix(predicted: Sequence[DetectedObject], truth: Sequence[DetectedObject], overlap: str) -> np.ndarray:
    """(P, T) IoU of every predicted and true object."""
    boxes_p = np.array([obj.bbox for obj in predicted], dtype=np.int64)
    boxes_t = np.array([obj.bbox for obj in truth], dtype=np.int64)
    lower = np.maximum(boxes_p[:, None, :2], boxes_t[None, :, :2])
    upper = np.minimum(boxes_p[:, None, 2:], boxes_t[None, :, 2:])
    heights, widths = upper[..., 0] - lower[..., 0], upper[..., 1] - lower[..., 1]
    box_intersection = np.clip(heights, 0, None) * np.clip(widths, 0, None)
    if overlap == "box":
        area_p = (boxes_p[:, 2] - boxes_p[:, 0]) * (boxes_p[:, 3] - boxes_p[:, 1])
        area_t = (boxes_t[:, 2] - boxes_t[:, 0]) * (boxes_t[:, 3] - boxes_t[:, 1])
        return box_intersection / (area_p[:, None] + area_t[None, :] - box_intersection)
    if overlap == "pixel":
        iou = np.zeros(box_intersection.shape)
        for i, j in zip(*np.nonzero(box_intersection)):
            iou[i, j] = _pixel_iou(predicted[i], truth[j])
        return iou
    raise UserError(f"overlap {overlap!r} is not supported; use 'box' or 'pixel'")


def _pixel_iou(first: DetectedObject, second: DetectedObject) -> float:
    """IoU of the two objects' pixel sets, compared inside the intersection of their boxes."""
    if first.mask is None or second.mask is None:
        raise UserError("pixel-overlap matching needs the objects' masks; use objects from extract_objects, "
                        "or overlap='box'")
    row0, col0 = max(first.bbox[0], second.bbox[0]), max(first.bbox[1], second.bbox[1])
    row1, col1 = min(first.bbox[2], second.bbox[2]), min(first.bbox[3], second.bbox[3])
    window_a = first.mask[row0 - first.bbox[0]:row1 - first.bbox[0], col0 - first.bbox[1]:col1 - first.bbox[1]]
    window_b = second.mask[row0 - second.bbox[0]:row1 - second.bbox[0], col0 - second.bbox[1]:col1 - second.bbox[1]]
    intersection = int(np.count_nonzero(window_a & window_b))
    return intersection / (first.pixels + second.pixels - intersection)


# --- one call for a runner, and the command line --------------------------------------------


def detect(prediction: np.ndarray, class_id: int, out_folder: PathLike, truth: Optional[np.ndarray] = None,
           scores: Optional[np.ndarray] = None, min_pixels: int = 1, connectivity: int = 8, opening: int = 0,
           iou_threshold: float = 0.5, overlap: str = "box", class_names: Optional[Sequence[str]] = None,
           transform: Optional[Transform] = None, crs: Optional[str] = None, stem: str = "objects") -> dict:
    """Extract the objects of ``class_id`` from a predicted label map, write ``<stem>.csv`` and
    ``<stem>.geojson`` in ``out_folder`` and, with ``truth`` (a label map of ids, IGNORE allowed),
    score them against the true objects (same ``min_pixels`` and ``connectivity``) into
    ``<stem>_scores.json``. Returns the scores (or just the object count without truth)."""
    prediction = _check_label_map(prediction)
    objects = extract_objects(prediction, class_id, scores, min_pixels, connectivity, opening)
    folder = Path(out_folder)
    write_objects_csv(folder / f"{stem}.csv", objects, transform, class_names)
    write_objects_geojson(folder / f"{stem}.geojson", objects, transform, class_names, crs)
    result: dict = {"class_id": int(class_id), "class": _class_name(class_id, class_names), "objects": len(objects)}
    if truth is not None:
        truth = _check_label_map(truth)
        if truth.shape != prediction.shape:
            raise UserError(f"the truth map is {truth.shape[0]}x{truth.shape[1]} but the prediction is "
                            f"{prediction.shape[0]}x{prediction.shape[1]}; give maps of one grid")
        true_objects = objects_from_labels(truth, class_id, min_pixels, connectivity)
        result.update(match_objects(objects, true_objects, iou_threshold, overlap))
        result.update(iou_threshold=iou_threshold, overlap=overlap, min_pixels=min_pixels, connectivity=connectivity)
        atomic_write_text(folder / f"{stem}_scores.json", json.dumps(result, indent=1) + "\n")
    return result


def read_label_map(path: PathLike, offset: int = 0) -> np.ndarray:
    """A label map of class ids from .png (one channel), .npy or .tif; ``offset`` is subtracted
    (e.g. 1 for ISPRS maps where 0 is the eroded boundary) and negative values become IGNORE."""
    path = Path(path)
    if path.suffix.lower() == ".png":
        if not path.is_file():
            raise UserError(f"{path}: no such file; check the path")
        from PIL import Image

        with Image.open(path) as image:
            values = np.asarray(image)
    else:
        from deephyperx.readers import read_raster

        values = np.asarray(read_raster(path))
    if values.ndim == 3 and values.shape[2] == 1:
        values = values[:, :, 0]
    if values.ndim != 2 or values.dtype.kind not in "biu":
        raise UserError(f"{path}: holds {values.dtype} values of shape {values.shape}; "
                        "give a one-channel map of integer class ids")
    ids = values.astype(np.int64) - int(offset)
    ids[ids < 0] = IGNORE
    return ids


def _class_id(value: str, class_names: Sequence[str]) -> int:
    """``--class`` as an integer id or a class name (case-insensitive)."""
    if value.strip().lstrip("-").isdigit():
        return int(value)
    lowered = [name.lower() for name in class_names]
    if value.lower() not in lowered:
        raise UserError(f"unknown class '{value}'; give an id or one of: {', '.join(class_names)}")
    return lowered.index(value.lower())


def build_parser() -> argparse.ArgumentParser:
    """The ``segment detect`` command line."""
    from deephyperx.command_line import OneLineParser

    parser = OneLineParser(
        prog="main.py segment detect", help_hint="python main.py segment detect --help",
        description="Segment-before-detect: objects of one class from a predicted label map, as CSV and "
                    "GeoJSON, with object-level precision/recall against a truth map.")
    parser.add_argument("--prediction", required=True, help="predicted class-id map (.png, .npy or .tif)")
    parser.add_argument("--class", dest="class_", required=True, help="class id or name (e.g. car)")
    parser.add_argument("--class-names", nargs="+", default=ISPRS_CLASSES,
                        help="class names by id (default: the ISPRS classes)")
    parser.add_argument("--truth", help="true label map on the same grid, for precision and recall")
    parser.add_argument("--truth-offset", type=int, default=0,
                        help="subtracted from truth values, negatives ignored (1 for ISPRS maps with 0 = boundary)")
    parser.add_argument("--prediction-offset", type=int, default=0, help="subtracted from prediction values")
    parser.add_argument("--scores", help=".npy class probabilities, (H, W) or (K, H, W) or (H, W, K)")
    parser.add_argument("--min-pixels", type=int, default=1, help="drop smaller components (default 1)")
    parser.add_argument("--connectivity", type=int, choices=[4, 8], default=8)
    parser.add_argument("--opening", type=int, default=0, help="binary opening radius separating touching objects")
    parser.add_argument("--iou", type=float, default=0.5, help="IoU needed for a match (default 0.5)")
    parser.add_argument("--overlap", choices=["box", "pixel"], default="box", help="IoU of boxes or of pixel sets")
    parser.add_argument("--geotiff", help="GeoTIFF of the same grid: write map coordinates and its CRS")
    parser.add_argument("--out", required=True, help="output folder")
    return parser


def detect_command(argv: Sequence[str]) -> int:
    """``main.py segment detect ...``: run :func:`detect` on files and print the result."""
    args = build_parser().parse_args(list(argv))
    prediction = read_label_map(args.prediction, args.prediction_offset)
    truth = read_label_map(args.truth, args.truth_offset) if args.truth else None
    scores = _read_scores(args.scores) if args.scores else None
    transform, crs = geotiff_transform(args.geotiff) if args.geotiff else (None, None)
    result = detect(prediction, _class_id(args.class_, args.class_names), args.out, truth, scores,
                    args.min_pixels, args.connectivity, args.opening, args.iou, args.overlap,
                    args.class_names, transform, crs)
    print(" ".join(f"{key}={_format(value)}" for key, value in result.items()))
    return 0


def _read_scores(path: str) -> np.ndarray:
    from deephyperx.readers import read_raster

    return np.asarray(read_raster(path), dtype=np.float32)


def _format(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
