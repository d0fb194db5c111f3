"""Caffe Datum LMDBs: write (convert_imageset), mean (compute_image_mean), read, transform, Data layer."""
from lmdb_tools import data_layer  # noqa: F401  (registers the net's "Data" layer type)
from lmdb_tools.datum import datum_to_array, image_to_datum, parse_datum
from lmdb_tools.mean import compute_image_mean, write_mean
from lmdb_tools.reader import LMDBDataset
from lmdb_tools.transformer import DataTransformer
from lmdb_tools.writer import ImagesetOptions, convert_imageset, read_list

__all__ = ["DataTransformer", "ImagesetOptions", "LMDBDataset", "compute_image_mean", "convert_imageset",
           "datum_to_array", "image_to_datum", "parse_datum", "read_list", "write_mean"]
