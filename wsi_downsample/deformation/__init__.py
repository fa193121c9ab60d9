"""Learned non-uniform downsampling: density -> grid (eq. 3) -> sampler -> exact inverse."""

from wsi_downsample.deformation.budget import Budget, budget_shape, density_shape, parse_budget
from wsi_downsample.deformation.densities import (
    DENSITIES,
    EdgeDensity,
    LearnedDensity,
    UniformDensity,
    density_edge,
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
from wsi_downsample.deformation.lowres import read_lowres
from wsi_downsample.deformation.net import DeformationNet
from wsi_downsample.deformation.sampler import sample_image, sample_labels
from wsi_downsample.deformation.scatter import iter_scatter_tiles, scatter_nearest_inverse
from wsi_downsample.deformation.slide_sampler import SampleResult, SlideSampler, local_spacing
from wsi_downsample.deformation.targets import boundary_target
from wsi_downsample.deformation.tile_cache import ReadStats

__all__ = [
    "Budget",
    "DENSITIES",
    "DeformationNet",
    "EdgeDensity",
    "InverseTile",
    "LearnedDensity",
    "OutputFrame",
    "ReadStats",
    "SampleResult",
    "SlideSampler",
    "UniformDensity",
    "auto_output_downsample",
    "boundary_target",
    "budget_shape",
    "density_edge",
    "density_shape",
    "density_uniform",
    "get_density",
    "invert_grid",
    "invert_labels",
    "iter_inverse_tiles",
    "iter_scatter_tiles",
    "local_spacing",
    "parse_budget",
    "read_lowres",
    "saliency_to_grid",
    "sample_image",
    "sample_labels",
    "scatter_nearest_inverse",
    "uniform_grid",
]
