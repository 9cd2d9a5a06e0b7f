"""Clustering buildings for the planner (docs/buildings.md).

Features: the registry's characteristics when every registry building has them (numbers as they
are, categories one-hot, district heating 0/1); otherwise features derived from each building's
measured days (the Cambridge archive publishes no characteristics): log10 of the mean daily
energy, base-load share (mean on days without HDD over the overall mean), HDD sensitivity (slope
over mean) and the weekday/weekend ratio. Features are standardised; k-means is fitted for every
k in k_min..k_max (below the number of buildings) and the k with the best silhouette kept; the
representative of a cluster is the member with measured demand closest to its centroid.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .buildings import CHARACTERISTICS, replace_all
from .planner_model import fit_lines

MEASURED_FEATURES = ["log10_mean_daily_kwh", "base_load_share", "hdd_sensitivity", "weekday_weekend_ratio"]


@dataclass
class Clustering:
    mode: str
    features: list[str]
    table: pd.DataFrame                       # building_id, cluster, is_representative, representative, distance, pc1, pc2, reason
    scores: dict[int, float] = field(default_factory=dict)
    k: int | None = None


def registry_features(registry: pd.DataFrame) -> pd.DataFrame:
    """Characteristics filled for every building, encoded; empty frame when none is complete."""
    complete = [c for c in CHARACTERISTICS if registry[c].notna().all()]
    frame = registry.set_index("building_id")[complete]
    if not complete:
        return pd.DataFrame(index=frame.index)
    categorical = [c for c in complete if frame[c].dtype == object]
    encoded = pd.get_dummies(frame, columns=categorical, dtype=float) if categorical else frame
    return encoded.astype(float)


def measured_features(days: pd.DataFrame, min_days: int) -> pd.DataFrame:
    """The four measured-data features per building with at least ``min_days`` valid days."""
    groups = days.groupby("building_id")
    mean = groups["energy_kwh"].mean()
    warm = days[days["hdd"] == 0].groupby("building_id")["energy_kwh"].mean().reindex(mean.index)
    weekday = days[~days["weekend"]].groupby("building_id")["energy_kwh"].mean()
    weekend = days[days["weekend"]].groupby("building_id")["energy_kwh"].mean()
    lines = fit_lines(days)
    frame = pd.DataFrame({
        "log10_mean_daily_kwh": np.log10(mean.clip(lower=1e-3)),
        "base_load_share": (warm / mean).fillna(0.0),
        "hdd_sensitivity": lines["slope"] / mean,
        "weekday_weekend_ratio": (weekday / weekend.replace(0, np.nan)).reindex(mean.index).fillna(1.0),
    })
    return frame[groups.size() >= min_days].replace([np.inf, -np.inf], np.nan).dropna()


def choose_features(registry: pd.DataFrame, days: pd.DataFrame, mode: str, min_days: int) -> tuple[str, pd.DataFrame]:
    """('registry' | 'measured', features indexed by building_id, registry buildings only)."""
    from_registry = registry_features(registry)
    if mode == "registry" or (mode == "auto" and from_registry.shape[1] > 0):
        return "registry", from_registry
    measured = measured_features(days[days["building_id"].isin(registry["building_id"])], min_days)
    return "measured", measured


def cluster(features: pd.DataFrame, k_min: int, k_max: int, seed: int) -> tuple[np.ndarray, np.ndarray, dict[int, float], int | None]:
    """(labels, distance to own centroid, silhouette per k, chosen k), on standardised features."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    z = standardise(features)
    candidates = range(k_min, min(k_max, len(z) - 1) + 1)
    fits = {k: KMeans(n_clusters=k, n_init=10, random_state=seed).fit(z) for k in candidates}
    scores = {k: float(silhouette_score(z, fit.labels_)) for k, fit in fits.items()}
    if not scores:
        return np.zeros(len(z), dtype=int), np.linalg.norm(z - z.mean(axis=0), axis=1), {}, None
    best = max(scores, key=lambda k: (round(scores[k], 12), -k))
    fit = fits[best]
    distance = np.linalg.norm(z - fit.cluster_centers_[fit.labels_], axis=1)
    return fit.labels_, distance, scores, best


def standardise(features: pd.DataFrame) -> np.ndarray:
    values = features.to_numpy(dtype=float)
    spread = values.std(axis=0)
    return (values - values.mean(axis=0)) / np.where(spread > 0, spread, 1.0)


def pca_2d(features: pd.DataFrame) -> np.ndarray:
    from sklearn.decomposition import PCA

    z = standardise(features)
    components = min(2, z.shape[1], z.shape[0])
    coords = PCA(n_components=components).fit_transform(z) if components else np.zeros((len(z), 0))
    return np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))


def build_clustering(registry: pd.DataFrame, days: pd.DataFrame, mode: str, k_min: int, k_max: int,
                     min_days: int, seed: int) -> Clustering:
    """Every registry building gets a row: its cluster, or the reason it has none."""
    chosen_mode, features = choose_features(registry, days, mode, min_days)
    table = registry[["building_id"]].copy()
    if len(features) == 0:
        table = table.assign(cluster=None, is_representative=False, representative=None, distance=np.nan,
                             pc1=np.nan, pc2=np.nan, reason=f"no {chosen_mode} features for any building")
        return Clustering(chosen_mode, list(features.columns), table)
    labels, distance, scores, k = cluster(features, k_min, k_max, seed)
    coords = pca_2d(features)
    found = pd.DataFrame({"building_id": features.index, "cluster": labels, "distance": distance,
                          "pc1": coords[:, 0], "pc2": coords[:, 1]})
    has_demand = found["building_id"].isin(days["building_id"].unique())
    ranked = found[has_demand].sort_values(["cluster", "distance", "building_id"])
    representatives = ranked.drop_duplicates("cluster").set_index("cluster")["building_id"]
    found["representative"] = found["cluster"].map(representatives)
    found["is_representative"] = found["building_id"].eq(found["representative"])
    table = table.merge(found, how="left")
    table["is_representative"] = table["is_representative"].astype("boolean").fillna(False).astype(bool)
    table["reason"] = np.where(table["cluster"].isna(), _reason(chosen_mode, min_days), None)
    if k is None:
        table["reason"] = np.where(table["cluster"].notna(), f"one group: only {len(features)} buildings, k-means needs more than {k_min}", table["reason"])
    return Clustering(chosen_mode, list(features.columns), table, scores, k)


def _reason(mode: str, min_days: int) -> str:
    if mode == "measured":
        return (f"not clustered: fewer than {min_days} valid measured days, and the registry characteristics are "
                "not complete for every building")
    return "not clustered: registry characteristics incomplete"


def render_pca(clustering: Clustering, path: Path) -> Path:
    """Buildings on the first two principal components, coloured by cluster, representatives ringed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = clustering.table[clustering.table["cluster"].notna()]
    fig, ax = plt.subplots(figsize=(7, 5))
    scatter = ax.scatter(shown["pc1"], shown["pc2"], c=shown["cluster"].astype(int), cmap="tab10", s=60)
    reps = shown[shown["is_representative"]]
    ax.scatter(reps["pc1"], reps["pc2"], s=220, facecolors="none", edgecolors="black", linewidths=1.5)
    for _, row in shown.iterrows():
        ax.annotate(str(row["building_id"]).replace("UCam_Building_", ""), (row["pc1"], row["pc2"]), fontsize=7,
                    xytext=(4, 3), textcoords="offset points")
    handles, labels = scatter.legend_elements()
    ax.legend([*handles, ax.collections[1]], [f"cluster {label}" for label in labels] + ["representative"], fontsize=8)
    ax.set_xlabel("PC1")
    ax.set_ylabel("PC2")
    ax.set_title(f"{len(shown)} buildings, k = {clustering.k}, {clustering.mode} features:\n{', '.join(clustering.features)}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def store(con, clustering: Clustering, version: str, now) -> None:
    """Replace planner.clusters and planner.k_scores with this clustering."""
    table = clustering.table.assign(feature_mode=clustering.mode, features=",".join(clustering.features),
                                    registry_version=version)
    replace_all(con, "planner.clusters", table, ["building_id", "cluster", "is_representative", "representative", "distance",
                                                 "pc1", "pc2", "feature_mode", "features", "reason", "registry_version"], now)
    scores = pd.DataFrame({"k": list(clustering.scores), "silhouette": list(clustering.scores.values())})
    scores = scores.assign(chosen=scores["k"].eq(clustering.k), feature_mode=clustering.mode)
    replace_all(con, "planner.k_scores", scores, ["k", "silhouette", "chosen", "feature_mode"], now)
