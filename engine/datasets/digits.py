"""scikit-learn's 8x8 handwritten digits: 1,797 images of 10 classes, shipped with scikit-learn
(no download). The embedded default dataset."""

from engine.datasets.base import Dataset, DatasetInfo, split_and_standardize


def load(seed: int = 0, test_size: float = 0.25, root=None) -> Dataset:
    from sklearn.datasets import load_digits  # here: importing sklearn takes about 1 s

    x, y = load_digits(return_X_y=True)
    return split_and_standardize("digits", x, y, seed, test_size)


INFO = DatasetInfo("digits", "Digits (scikit-learn, 8x8)", (64,), 10, 1797, load=load, own_split=False)
