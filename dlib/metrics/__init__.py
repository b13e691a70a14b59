"""Sample-quality metrics. First used in notebooks 03-06; derived and compared in notebook 10.

    checks       check_images, check_features, check_same_width    clear errors for bad input
    frechet      feature_stats, frechet_distance, fid_from_features, fid_with_spread, fid_floor,
                 fid_difference_with_spread  FID (Heusel et al. 2017)
    extractors   FeatureExtractor, extract_features, classifier_fid, classifier_extractor, weights_fingerprint
    inception    inception_features, inception_input, tf1_resize_bilinear, load_inception, inception_extractor    offline
    cache        dataset_features, feature_cache_dir    verified on-disk features of a shipped dataset split
    kid          kid, KID, mmd2_unbiased, polynomial_kernel    KID (Binkowski et al. 2018)
    manifold     precision_recall, density_coverage, knn_radii    Kynkaanniemi et al. 2019; Naeem et al. 2020
    scores       inception_score, clip_score    Salimans et al. 2016; Hessel et al. 2021
    accuracy     class_probabilities, predictions, share_as_requested, confident_share, class_shares,
                 test_accuracy, noisy_test_accuracy

Images are dlib's (N, C, H, W) floats in [-1, 1]; features are (N, D) floats, one row per image.
A metric is comparable only with the same metric computed by the same extractor, preprocessing and N.
"""

from dlib.metrics.accuracy import (
    CONFIDENT,
    NOISY_ACCURACY_TS,
    class_probabilities,
    class_shares,
    confident_share,
    noisy_test_accuracy,
    predictions,
    share_as_requested,
    test_accuracy,
)
from dlib.metrics.cache import dataset_features, feature_cache_dir
from dlib.metrics.checks import check_features, check_images, check_same_width
from dlib.metrics.extractors import (
    FeatureExtractor,
    classifier_extractor,
    classifier_fid,
    extract_features,
    weights_fingerprint,
)
from dlib.metrics.frechet import (
    feature_stats,
    fid_difference_with_spread,
    fid_floor,
    fid_from_features,
    fid_with_spread,
    frechet_distance,
)
from dlib.metrics.inception import (
    INCEPTION_DIM,
    INCEPTION_PREPROCESSING,
    inception_extractor,
    inception_features,
    inception_input,
    inception_weights_path,
    load_inception,
    tf1_resize_bilinear,
)
from dlib.metrics.kid import KID, kid, mmd2_unbiased, polynomial_kernel
from dlib.metrics.manifold import density_coverage, knn_radii, precision_recall
from dlib.metrics.scores import clip_score, inception_score

__all__ = [
    "CONFIDENT",
    "INCEPTION_DIM",
    "INCEPTION_PREPROCESSING",
    "KID",
    "NOISY_ACCURACY_TS",
    "FeatureExtractor",
    "check_features",
    "check_images",
    "check_same_width",
    "class_probabilities",
    "class_shares",
    "classifier_extractor",
    "classifier_fid",
    "clip_score",
    "confident_share",
    "dataset_features",
    "density_coverage",
    "extract_features",
    "feature_cache_dir",
    "feature_stats",
    "fid_from_features",
    "fid_difference_with_spread",
    "fid_floor",
    "fid_with_spread",
    "frechet_distance",
    "inception_extractor",
    "inception_features",
    "inception_input",
    "inception_score",
    "inception_weights_path",
    "kid",
    "knn_radii",
    "load_inception",
    "mmd2_unbiased",
    "noisy_test_accuracy",
    "polynomial_kernel",
    "precision_recall",
    "predictions",
    "share_as_requested",
    "test_accuracy",
    "tf1_resize_bilinear",
    "weights_fingerprint",
]
