"""Learned non-uniform downsampling: density -> grid (eq. 3) -> sampler -> exact inverse."""

from wsi_downsample.deformation.budget import Budget, budget_shape, density_shape, parse_budget
from wsi_downsample.deformation.densities import (
    DENSITIES,
    EdgeDensity,
    LearnedDensity,
    UniformDensity,
    density_edge,
    density_from_boundaries,
    density_uniform,
    get_density,
)
from wsi_downsample.deformation.grid import saliency_to_grid, uniform_grid
from wsi_downsample.deformation.inverse import (
    InverseTile,
    OutputFrame,
    auto_output_downsample,
    invert_grid,
    invert_labels,
    iter_inverse_tiles,
)
from wsi_downsample.deformation.lowres import area_resize, lowres_level, read_lowres
from wsi_downsample.deformation.net import DeformationNet
from wsi_downsample.deformation.sampler import sample_image, sample_labels
from wsi_downsample.deformation.scatter import iter_scatter_tiles, scatter_nearest_inverse
from wsi_downsample.deformation.slide_sampler import (
    SampleResult,
    SlideSampler,
    choose_levels,
    footprint_tiles,
    local_spacing,
)
from wsi_downsample.deformation.targets import boundary_target
from wsi_downsample.deformation.tile_cache import (
    ArrayTileSource,
    LevelStats,
    ReadStats,
    TileCache,
    TileSource,
)

__all__ = [
    "Budget",
    "budget_shape",
    "density_shape",
    "parse_budget",
    "saliency_to_grid",
    "uniform_grid",
    "InverseTile",
    "OutputFrame",
    "auto_output_downsample",
    "invert_grid",
    "invert_labels",
    "iter_inverse_tiles",
    "iter_scatter_tiles",
    "scatter_nearest_inverse",
    "DeformationNet",
    "sample_image",
    "sample_labels",
    "DENSITIES",
    "UniformDensity",
    "EdgeDensity",
    "LearnedDensity",
    "density_edge",
    "density_from_boundaries",
    "density_uniform",
    "get_density",
    "boundary_target",
    "read_lowres",
    "lowres_level",
    "area_resize",
    "SlideSampler",
    "SampleResult",
    "local_spacing",
    "choose_levels",
    "footprint_tiles",
    "ReadStats",
    "LevelStats",
    "TileCache",
    "ArrayTileSource",
    "TileSource",
]
