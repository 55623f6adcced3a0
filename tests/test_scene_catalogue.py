"""A catalogue of many scene files sampled through a bounded cache: patches equal those the
in-memory sampler cuts from each whole scene (borders included), the cache never passes its bound
and is not thrashed, sampling is a deterministic function of the epoch's generator, the
normalisation streamed over files equals the in-memory fit, and bad catalogues give one-line
errors. Scenes are tiles of one seeded synthetic acquisition (one sensor, shared classes), written
as .npy, chunked and compressed HDF5, and ENVI with PNG labels."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from deephyperx.catalogue_sampling import (BlockCache, CatalogueMaker, CatalogueSource, batch_order, build_index,
                                           choose_block_rows, fit_catalogue_normaliser)
from deephyperx.errors import UserError
from deephyperx.sizes import parse_size
from deephyperx.preprocessing import fit_normaliser
from deephyperx.sampling import Augmentation, PatchSampler
from deephyperx.scene import IGNORE
from deephyperx.scene_catalogue import NONE, TEST, TRAIN, VAL, load_catalogue, write_catalogue
from deephyperx.seeding import torch_generator
from deephyperx.synthetic import make_synthetic_scene
from deephyperx.sampling import batches

TILE = 32
GRID = (3, 4)
BANDS = 16
CLASSES = ["meadow", "forest", "crop", "water"]
TEST_TILES = ["t03", "t07", "t10"]


def write_tiles(folder: Path, seed: int = 3, n_classes: int = len(CLASSES)) -> list[dict]:
    """12 tiles of 32x32 pixels cut from one synthetic scene; labels are class + 1, 0 unlabelled.
    Tiles 6-8 are HDF5 (cube and labels in one chunked, gzip-compressed file), tile 9 ENVI with PNG
    labels, the others .npy. Returns the catalogue's scene entries."""
    scene = make_synthetic_scene(seed=seed, rows=GRID[0] * TILE, cols=GRID[1] * TILE, n_bands=BANDS,
                                 n_classes=n_classes)
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for number in range(GRID[0] * GRID[1]):
        i, j = divmod(number, GRID[1])
        cube = scene.cube[i * TILE:(i + 1) * TILE, j * TILE:(j + 1) * TILE]
        labels = (scene.labels[i * TILE:(i + 1) * TILE, j * TILE:(j + 1) * TILE] + 1).astype(np.uint8)
        name = f"t{number:02d}"
        kind = {6: "h5", 7: "h5", 8: "h5", 9: "envi"}.get(number, "npy")
        if kind == "h5":
            with h5py.File(folder / f"{name}.h5", "w") as handle:
                handle.create_dataset("cube", data=cube, chunks=(8, 8, BANDS), compression="gzip")
                handle.create_dataset("labels", data=labels, chunks=(8, 8), compression="gzip")
            entries.append({"name": name, "cube": f"{name}.h5", "labels": f"{name}.h5", "cube_key": "cube",
                            "label_key": "labels"})
        elif kind == "envi":
            import spectral

            spectral.envi.save_image(str(folder / f"{name}.hdr"), cube, dtype=np.float32, interleave="bsq",
                                     force=True)
            Image.fromarray(labels).save(folder / f"{name}_gt.png")
            entries.append({"name": name, "cube": f"{name}.hdr", "labels": f"{name}_gt.png"})
        else:
            np.save(folder / f"{name}.npy", cube)
            np.save(folder / f"{name}_gt.npy", labels)
            entries.append({"name": name, "cube": f"{name}.npy", "labels": f"{name}_gt.npy"})
    return entries


def whole_scene(folder: Path, entry: dict) -> tuple[np.ndarray, np.ndarray]:
    """A tile's cube and class ids read whole, independently of the catalogue code."""
    name = entry["name"]
    if entry["cube"].endswith(".h5"):
        with h5py.File(folder / entry["cube"], "r") as handle:
            return handle["cube"][()], handle["labels"][()].astype(np.int64) - 1
    if entry["cube"].endswith(".hdr"):
        import spectral

        cube = np.asarray(spectral.open_image(str(folder / entry["cube"])).load())
        return cube, np.asarray(Image.open(folder / f"{name}_gt.png")).astype(np.int64) - 1
    return np.load(folder / entry["cube"]), np.load(folder / entry["labels"]).astype(np.int64) - 1


@pytest.fixture(scope="module")
def tiles(tmp_path_factory) -> tuple[Path, list[dict]]:
    folder = tmp_path_factory.mktemp("tiles")
    return folder, write_tiles(folder)


def windowed(entries: list[dict]) -> list[dict]:
    """The tiles read by rows (all but the ENVI tile with PNG labels, which is read whole)."""
    return [e for e in entries if not e["labels"].endswith(".png")]


def catalogue_file(folder: Path, entries: list[dict], split: dict | None = None, name: str = "cat.yaml",
                   **settings) -> Path:
    return write_catalogue(folder / name, entries, CLASSES, split=split or {"test_scenes": TEST_TILES}, **settings)


def source_of(path: Path, patch_size: int, cache_bytes: int, block_rows: int | None = None,
              method: str = "standard") -> CatalogueSource:
    catalogue = load_catalogue(path)
    rows = choose_block_rows(catalogue, patch_size, cache_bytes, block_rows)
    index = build_index(catalogue, patch_size, rows)
    normaliser = fit_catalogue_normaliser(catalogue, index, method)
    return CatalogueSource(catalogue, index, normaliser, BlockCache(cache_bytes))


# ----- the catalogue ------------------------------------------------------------------------------

def test_catalogue_reads_headers_and_gives_each_scene_its_role(tiles):
    folder, entries = tiles
    catalogue = load_catalogue(catalogue_file(folder, entries, {"test_scenes": TEST_TILES, "val_scenes": ["t00"]}))
    assert [s.name for s in catalogue.scenes] == [e["name"] for e in entries]
    assert catalogue.n_bands == BANDS and catalogue.n_classes == 4
    roles = {s.name: s.role for s in catalogue.scenes}
    assert [n for n, r in roles.items() if r == "test"] == TEST_TILES and roles["t00"] == "val"
    assert roles["t01"] == "train"
    assert not catalogue.scenes[9].windowed and catalogue.scenes[6].windowed  # PNG labels: read whole
    index = build_index(catalogue, 5, 8)
    per_scene = {r: index.scene_counts(r, 12) for r in (TRAIN, VAL, TEST)}
    for s, scene in enumerate(catalogue.scenes):
        _, labels = whole_scene(folder, entries[s])
        expected = {"train": TRAIN, "val": VAL, "test": TEST}[scene.role]
        assert per_scene[expected][s] == (labels != IGNORE).sum()
        assert sum(per_scene[r][s] for r in (TRAIN, VAL, TEST)) == (labels != IGNORE).sum()


def test_pixel_split_is_a_fixed_hash_of_the_pixel_whatever_the_window(tiles):
    folder, entries = tiles
    catalogue = load_catalogue(catalogue_file(folder, entries, {"test_fraction": 0.3, "val_fraction": 0.1,
                                                                "seed": 4}, name="split.yaml"))
    assert {s.role for s in catalogue.scenes} == {"split"}
    classes = catalogue.classes(0, 0, TILE)
    whole = catalogue.roles(0, 0, TILE, classes)
    for row0, row1 in ((0, 5), (5, 17), (17, TILE)):
        assert np.array_equal(catalogue.roles(0, row0, row1, classes[row0:row1]), whole[row0:row1])
    labelled = classes != IGNORE
    assert (whole[~labelled] == NONE).all()
    shares = [np.mean(whole[labelled] == r) for r in (TEST, VAL, TRAIN)]
    assert shares == pytest.approx([0.3, 0.1, 0.6], abs=0.06)
    other = load_catalogue(catalogue_file(folder, entries, {"test_fraction": 0.3, "seed": 5}, name="s5.yaml"))
    assert not np.array_equal(other.roles(0, 0, TILE, classes), whole)


# ----- patches ------------------------------------------------------------------------------------

@pytest.mark.parametrize("patch_size", [1, 4, 5])
def test_patches_equal_the_in_memory_sampler_of_each_whole_scene(tiles, patch_size):
    """One pass over every training pixel (blocks of 6-11 rows, so blocks meet inside scenes and
    patches cross block and scene borders) gives each pixel once, with the whole scene's patch."""
    folder, entries = tiles
    source = source_of(catalogue_file(folder, entries), patch_size, 300_000, block_rows=6)
    assert len(source.index) > 12 and source.group_size < len(source.index)
    maker = CatalogueMaker(source, "train")
    blocks, ranks = maker.draw(torch.arange(len(maker)), torch_generator(0, 0, 2))
    batch = source.cut(blocks, ranks, TRAIN)
    scenes = maker.scenes_of(blocks[batch_order(blocks)])  # the batch lists samples block by block
    seen = set()
    for s in np.unique(scenes):
        cube, labels = whole_scene(folder, entries[s])
        sampler = PatchSampler([source.normaliser.apply(cube)], labels, patch_size)
        at = torch.from_numpy(np.flatnonzero(scenes == s))
        rows, cols = batch.rows[at], batch.cols[at]
        assert torch.equal(batch.inputs[0][at], sampler.patches(rows, cols)[0])
        assert torch.equal(batch.target[at], sampler.centre_labels(rows, cols))
        seen |= {(int(s), int(r), int(c)) for r, c in zip(rows, cols)}
    borders = [(r, c) for _, r, c in seen if r in (0, TILE - 1) or c in (0, TILE - 1)]
    assert len(seen) == len(maker) == source.index.role_counts(TRAIN).sum() and borders


def test_streamed_normalisation_equals_the_in_memory_fit(tiles):
    folder, entries = tiles
    path = catalogue_file(folder, entries)
    pixels = []
    for entry in entries:
        if entry["name"] not in TEST_TILES:
            cube, labels = whole_scene(folder, entry)
            pixels.append(cube[labels != IGNORE])
    column = np.concatenate(pixels)[:, None, :]
    for method in ("standard", "minmax"):
        streamed = source_of(path, 3, 300_000, 6, method).normaliser
        expected = fit_normaliser(column, np.ones(column.shape[:2], bool), method)
        assert streamed.method == method
        np.testing.assert_allclose(streamed.shift, expected.shift, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(streamed.scale, expected.scale, rtol=1e-5)


# ----- the cache and the epoch plan ---------------------------------------------------------------

def test_cache_stays_within_its_bound_and_reads_a_block_once_per_visit(tiles):
    folder, entries = tiles
    entries = windowed(entries)
    source = source_of(catalogue_file(folder, entries, name="windowed.yaml"), 5, 150_000, block_rows=8)
    catalogue_bytes = sum(np.prod(whole_scene(folder, e)[0].shape) * 4 for e in entries)
    assert source.cache.max_bytes < catalogue_bytes / 4
    maker = CatalogueMaker(source, "train", epoch_samples=3000, visit_samples=100)
    assert 1 < source.group_size < len(source.index)
    visits = 30  # 3000 samples, 100 per visit to a block
    for epoch in range(3):
        before, lookups = source.cache.misses, source.cache.hits + source.cache.misses
        count = sum(len(b.target) for b in batches(maker, 64, torch_generator(1, epoch, 2), shuffle=True,
                                                   n_samples=3000))
        assert count == 3000
        assert source.cache.misses - before <= visits  # a block is read at most once per visit
        assert source.cache.hits + source.cache.misses - lookups > 3 * visits  # batches mix several blocks
        assert source.cache.peak_bytes <= source.cache.max_bytes
    stats = source.cache.stats()
    assert stats["hits"] > stats["misses"] and stats["evictions"] > 0
    for _, (size, entry) in source.cache._entries.items():
        assert size == entry.nbytes  # what the bound counts is what a block holds


def test_sampling_is_a_deterministic_function_of_the_epoch_generator(tiles):
    folder, entries = tiles
    path = catalogue_file(folder, entries)

    def epoch(seed: int, cache: int) -> list:
        maker = CatalogueMaker(source_of(path, 3, cache, 8), "train", epoch_samples=500,
                               augmentation=Augmentation(flip=True, radiation=True))
        return [b for b in batches(maker, 50, torch_generator(seed, 0, 2), augment=True, shuffle=True, n_samples=500)]

    first, again, other = epoch(7, 200_000), epoch(7, 200_000), epoch(8, 200_000)
    assert all(torch.equal(a.inputs[0], b.inputs[0]) and torch.equal(a.target, b.target) for a, b in zip(first, again))
    assert not all(torch.equal(a.rows, b.rows) for a, b in zip(first, other))


def test_validation_samples_come_in_block_order_one_load_per_block(tiles):
    folder, entries = tiles
    source = source_of(catalogue_file(folder, entries, {"test_scenes": TEST_TILES, "val_fraction": 0.2}), 3,
                       120_000, 8)
    maker = CatalogueMaker(source, "val")
    assert len(maker) == source.index.role_counts(VAL).sum() > 0
    before = source.cache.misses
    targets = torch.cat([b.target for b in batches(maker, 100)])
    assert source.cache.misses - before == int((source.index.role_counts(VAL) > 0).sum())
    assert len(targets) == len(maker) and (targets != IGNORE).all()


def test_epoch_over_the_whole_catalogue_stays_bounded_with_a_tiny_cache(tiles):
    """A cache of two blocks: every epoch still loads each block once (no thrashing)."""
    folder, entries = tiles
    source = source_of(catalogue_file(folder, windowed(entries), name="windowed.yaml"), 3, 60_000, 8)
    assert source.group_size <= 2
    maker = CatalogueMaker(source, "train")
    list(batches(maker, 100, torch_generator(0, 0, 2), shuffle=True))
    assert source.cache.misses <= (source.index.role_counts(TRAIN) > 0).sum() + 1
    assert source.cache.peak_bytes <= 60_000


# ----- bad catalogues --------------------------------------------------------------------------------

def _bad(folder: Path, entries: list[dict], case: str) -> Path:
    """A catalogue with one fault (``case``)."""
    bad = [dict(e) for e in entries[:4]]
    settings: dict = {"split": {"test_scenes": ["t03"]}}
    if case == "missing file":
        bad[1]["cube"] = "nowhere.npy"
    elif case == "band count":
        np.save(folder / "short.npy", np.zeros((TILE, TILE, BANDS - 1), np.float32))
        bad[2]["cube"] = "short.npy"
    elif case == "size":
        np.save(folder / "small_gt.npy", np.ones((TILE, TILE - 2), np.uint8))
        bad[0]["labels"] = "small_gt.npy"
    elif case == "undeclared label":
        labels = np.load(folder / "t01_gt.npy")
        labels[3, 4] = 9
        np.save(folder / "nine_gt.npy", labels)
        bad[1]["labels"] = "nine_gt.npy"
    elif case == "unknown key":
        bad[0]["colour"] = "red"
    elif case == "unknown test scene":
        settings["split"] = {"test_scenes": ["t99"]}
    elif case == "nothing held out":
        settings["split"] = {}
    elif case == "duplicate name":
        bad[1]["name"] = bad[0]["name"]
    elif case == "label values":
        settings["label_values"] = [1, 2, 3]
    path = folder / f"bad_{case.replace(' ', '_')}.yaml"
    write_catalogue(path, bad, CLASSES, **settings)
    return path


BAD_CASES = {
    "missing file": "nowhere.npy: no such file",
    "band count": "has 15 bands",
    "size": "cube is 32x32",
    "undeclared label": "label values [9]",
    "unknown key": "unknown key 'colour'",
    "unknown test scene": "names scene 't99'",
    "nothing held out": "nothing is held out",
    "duplicate name": "two scenes are named",
    "label values": "4 class_names but 3 label_values",
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_catalogues_give_one_line_errors(tiles, case):
    folder, entries = tiles
    path = _bad(folder, entries, case)
    with pytest.raises(UserError) as raised:
        catalogue = load_catalogue(path)
        build_index(catalogue, 3, 8)  # label values are checked as labels stream
    message = str(raised.value)
    assert BAD_CASES[case] in message and "\n" not in message


def test_a_cache_too_small_for_one_block_is_refused_before_reading(tiles):
    folder, entries = tiles
    catalogue = load_catalogue(catalogue_file(folder, entries))
    with pytest.raises(UserError, match="cannot hold a block"):
        choose_block_rows(catalogue, 5, 20_000, 8)
    with pytest.raises(UserError, match="read whole"):  # the ENVI tile with PNG labels is one block
        choose_block_rows(catalogue, 5, 45_000, 6)
    assert parse_size("256MB") == 256_000_000 and parse_size("1GiB") == 2 ** 30 and parse_size(4096) == 4096
    with pytest.raises(UserError, match="256XB"):
        parse_size("256XB")


# ----- real data ----------------------------------------------------------------------------------------

def test_indian_pines_cut_into_four_files_gives_the_whole_quadrants_patches(shared_data, tmp_path):
    """Real uint16 AVIRIS data: the four quadrants of Indian Pines as four files of a catalogue."""
    from deephyperx.readers import read_raster

    cube = np.asarray(read_raster(shared_data / "IndianPines" / "Indian_pines_corrected.mat"))
    labels = np.asarray(read_raster(shared_data / "IndianPines" / "Indian_pines_gt.mat"))
    entries, half = [], 72
    for q, (r, c) in enumerate(((0, 0), (0, half), (half, 0), (half, half))):
        np.save(tmp_path / f"q{q}.npy", cube[r:r + half + 1, c:c + half + 1])
        np.save(tmp_path / f"q{q}_gt.npy", labels[r:r + half + 1, c:c + half + 1])
        entries.append({"name": f"q{q}", "cube": f"q{q}.npy", "labels": f"q{q}_gt.npy"})
    path = write_catalogue(tmp_path / "ip.yaml", entries, [f"c{k}" for k in range(16)],
                           label_values=list(range(1, 17)), split={"test_scenes": ["q3"]})
    source = source_of(path, 5, 4_000_000, 20)
    maker = CatalogueMaker(source, "train", epoch_samples=600, visit_samples=50)
    blocks, ranks = maker.draw(torch.arange(600), torch_generator(0, 0, 2))
    batch = source.cut(blocks, ranks, TRAIN)
    scenes = maker.scenes_of(blocks[batch_order(blocks)])
    assert set(scenes.tolist()) == {0, 1, 2}
    for q in range(3):
        quadrant = np.load(tmp_path / f"q{q}.npy")
        sampler = PatchSampler([source.normaliser.apply(quadrant)], np.zeros(quadrant.shape[:2], int), 5)
        at = torch.from_numpy(np.flatnonzero(scenes == q))
        assert torch.equal(batch.inputs[0][at], sampler.patches(batch.rows[at], batch.cols[at])[0])


# ----- the segmentation side: tiles through their caches ---------------------------------------------------

def test_segmentation_tiles_stay_within_their_caches_across_many_tiles(tmp_path):
    """RandomCrops over 12 PNG tiles (decoded whole, so held by the tile set's RasterCache) with a
    cache of three tiles: the decoded rasters and TileReader's normalised tiles stay within bounds."""
    from deephyperx.tile_sampling import RandomCrops, TileReader, fit_source_normalisers
    from deephyperx.tiles import Region, Tile, TileSet, ValueDecoder

    rng = np.random.default_rng(0)
    tiles = {}
    for k in range(12):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / f"i{k}.png")
        Image.fromarray(rng.integers(1, 4, (64, 64), dtype=np.uint8)).save(tmp_path / f"l{k}.png")
        tiles[f"i{k}"] = Tile(f"i{k}", {"image": str(tmp_path / f"i{k}.png")}, str(tmp_path / f"l{k}.png"))
    tile_bytes = 64 * 64 * 3
    tileset = TileSet("pngs", tiles, ["a", "b", "c"], [(1, 1, 1), (2, 2, 2), (3, 3, 3)], {"image": 3},
                      [Region(t) for t in tiles], [], ValueDecoder([1, 2, 3], ignored=[0]), cache_bytes=3 * tile_bytes)
    normalisers = fit_source_normalisers(tileset, tileset.train, ["image"])
    reader_bound = 3 * 64 * 64 * 3 * 4
    reader = TileReader(tileset, ["image"], normalisers, cache_bytes=reader_bound)
    crops = RandomCrops(tileset, tileset.train, ["image"], 32, normalisers, reader=reader)
    peak = 0
    for batch in batches(crops, 8, torch_generator(0, 0, 2), shuffle=True, n_samples=96):
        resident = sum(r.resident_bytes for _, r in tileset._rasters._rasters.values())
        peak = max(peak, resident)
        assert batch.inputs[0].shape == (8, 3, 32, 32)
    assert 0 < peak <= 3 * tile_bytes
    held = [a for arrays in reader._cache.values() if arrays is not None for a in arrays]
    held += [a for a in reader._labels.values() if a is not None]
    assert held and sum(a.nbytes for a in held) <= reader_bound and reader.cache_left >= 0
    assert sum(arrays is None for arrays in reader._cache.values()) > 0  # later tiles are read by window
