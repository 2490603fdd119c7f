"""Mini-batch k-means (minivec2vec.kmeans): time, peak memory and inertia."""
import minivec2vec

from .common import KMEANS_CLUSTERS, KMEANS_DATASETS, SEED, kmeans_data, random_rows


class KMeans:
    """The default k-means (k-means++ on 3,072 rows, 20 mini-batch steps of 4,096 rows, then
    the Lloyd passes of ``default_lloyd_passes``): 100 clusters on the sample, 500 (as in
    refine-2) on the large set."""

    params = [KMEANS_DATASETS]
    param_names = ["dataset"]
    timeout = 600

    def setup(self, dataset):
        self.X = kmeans_data(dataset)
        self.n_clusters = KMEANS_CLUSTERS[dataset]

    def time_kmeans(self, dataset):
        minivec2vec.kmeans(self.X, self.n_clusters, random_state=SEED)

    def track_inertia(self, dataset):
        return minivec2vec.kmeans(self.X, self.n_clusters, random_state=SEED)[2]

    track_inertia.unit = "inertia"


class KMeansLloydRatio:
    """Inertia of the default k-means / inertia of full Lloyd from the same k-means++ start.

    1.0 is as good as Lloyd (up to 100 passes); a few tenths of a percent above is the usual
    price of the mini-batches. On the sample with 100 clusters only: the Lloyd reference is
    slow on large data.
    """

    timeout = 600
    n_clusters = KMEANS_CLUSTERS["sample-5k"]

    def setup(self):
        self.X = kmeans_data("sample-5k")

    def track_inertia_ratio(self):
        ours = minivec2vec.kmeans(self.X, self.n_clusters, random_state=SEED)[2]
        lloyd = minivec2vec.kmeans(self.X, self.n_clusters, random_state=SEED, max_iter=0,
                                   lloyd_passes=100)[2]
        return ours / lloyd

    track_inertia_ratio.unit = "ratio"


class KMeansStages:
    """The stages of the sample's 100-cluster k-means on their own, to locate a regression.

    Every stage includes the final assignment of all rows (labels and inertia).
    """

    params = [["kmeans++", "minibatch", "lloyd_pass"]]
    param_names = ["stage"]
    timeout = 600
    n_clusters = KMEANS_CLUSTERS["sample-5k"]

    def setup(self, stage):
        self.X = kmeans_data("sample-5k")
        self.init = random_rows(self.X, self.n_clusters)

    def time_stage(self, stage):
        if stage == "kmeans++":
            minivec2vec.kmeans(self.X, self.n_clusters, random_state=SEED, max_iter=0,
                               lloyd_passes=0)
        elif stage == "minibatch":
            minivec2vec.kmeans(self.X, self.n_clusters, random_state=SEED, init=self.init,
                               lloyd_passes=0)
        else:
            minivec2vec.kmeans(self.X, self.n_clusters, random_state=SEED, init=self.init,
                               max_iter=0, lloyd_passes=1)


class AnchorKMeans:
    """The clustering of one anchor run: 2000 rows, 20 clusters, up to 30 Lloyd passes.

    Tiny per-call work, so this mostly measures fixed costs (thread start-up, parallel
    regions), hence the thread counts.
    """

    params = [[1, 2]]
    param_names = ["n_threads"]

    def setup(self, n_threads):
        self.X = kmeans_data("sample-5k")[:2000]

    def time_anchor_kmeans(self, n_threads):
        minivec2vec.kmeans(self.X, 20, random_state=SEED, max_iter=0, lloyd_passes=30,
                           n_threads=n_threads)
