"""Config groups: the concerns that the cluster and compare configs share (sampling, PCA, roles, intervals) or
hold on their own (DBSCAN, finding thresholds, compute), and the base that takes, dumps and shows their fields
flat, each a flag of its own name."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator
from pydantic.fields import FieldInfo


class Group(BaseModel):
    """One concern of a config (sampling, PCA, roles, ...): a sub-model whose fields are flags of their own name."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Grouped(BaseModel):
    """A config whose fields may be Groups. It takes each group's fields flat too (`role_threshold=0.4` as well as
    `roles={"role_threshold": 0.4}`), as the command line, prefect.yaml and the Prefect UI give them; it is dumped
    and its JSON schema lists them flat, so that Prefect's parameters keep one name a flag; `leaves()` are the
    fields as flags: a group's fields where the group is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def groups(cls) -> dict[str, type[Group]]:
        return {name: field.annotation for name, field in cls.model_fields.items()
                if isinstance(field.annotation, type) and issubclass(field.annotation, Group)}

    @classmethod
    def leaves(cls) -> dict[str, tuple[FieldInfo, Any]]:
        """Every flag's field and default (a group's own default where the config sets one), in field order."""
        leaves = {}
        for name, field in cls.model_fields.items():
            group = cls.groups().get(name)
            if group is None:
                leaves[name] = (field, field.default)
            else:
                leaves.update({leaf: (info, getattr(field.default, leaf)) for leaf, info in group.model_fields.items()})
        return leaves

    @model_validator(mode="before")
    @classmethod
    def _nest_flat_fields(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name, group in cls.groups().items():
            flat = {leaf: data.pop(leaf) for leaf in group.model_fields if leaf in data}
            if flat:
                given = data.get(name, {})
                data[name] = {**(given.model_dump() if isinstance(given, BaseModel) else given), **flat}
        return data

    @model_serializer(mode="wrap")
    def _flat(self, handler) -> dict:
        dumped = handler(self)
        return {key: value for name, field in dumped.items()
                for key, value in (field.items() if name in self.groups() else [(name, field)])}

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema, handler) -> dict:
        schema = handler.resolve_ref_schema(handler(core_schema))
        properties = {}
        for name, spec in schema["properties"].items():
            if name not in cls.groups():
                properties[name] = spec
                continue
            default = cls.model_fields[name].default
            group = handler.resolve_ref_schema(spec["allOf"][0] if "allOf" in spec else spec)
            properties.update({leaf: {**leaf_spec, "default": getattr(default, leaf)}
                               for leaf, leaf_spec in group["properties"].items()})
        schema["properties"] = properties
        return schema


class Sampling(Group):
    """Which rows of a dataset are read."""

    sample: Literal["first", "random", "all"] = Field("first", description="'first': the first features of each shard (as the original); 'random': a seeded fraction of rows (the same rows of both datasets in a comparison); 'all': every row of the dataset")
    features_per_shard: int | None = Field(None, ge=1, description="with sample 'first': features kept per shard (default: all)")
    fraction: float = Field(1.0, gt=0, le=1, description="with sample 'random': fraction of rows kept")


class Projection(Group):
    """The PCA the rows are projected with."""

    pca_components: int = Field(50, ge=2, description="PCA components the clusterings run on (a comparison fits one PCA on rows of both datasets)")
    pca_fit_rows: int = Field(20000, ge=2, description="rows (seeded choice; half from each dataset in a comparison) the PCA is fitted on; every row is then projected where it is read")


class RoleRules(Group):
    """The role and pattern rules' thresholds on the attention masses (see "Head roles" in the methods)."""

    role_threshold: float = Field(0.5, gt=0, lt=1, description="a map (and a head, by its mean) is an X map when more than this share of its attention goes to X (Clark et al. 2019)")
    mixed_threshold: float = Field(0.2, gt=0, lt=1, description="vertical+diagonal pattern: both the vertical and the diagonal mass at least this, and together above the role threshold")
    block_threshold: float = Field(0.5, gt=0, lt=1, description="block pattern: segment focus above this (0 for uniform rows, 1 when each segment attends only to itself)")


class Intervals(Group):
    """How many resamples back the confidence intervals and the permutation tests."""

    bootstrap: int = Field(200, ge=10, description="bootstrap resamples of features behind every confidence interval")
    permutations: int = Field(10_000, ge=10, description="permutations per head behind each p-value: of the answerable / unanswerable labels (cluster), of A and B within each feature for the energy distance and the cluster shares (compare)")


class Density(Group):
    """DBSCAN: its parameters, the grid search and how it runs at scale."""

    knee_sample: int = Field(10_000, ge=10, description="rows (seeded choice) whose distance to their min_samples-th neighbour among all rows draws the k-distance curve")
    dbscan_exact_rows: int = Field(10_000, ge=10, description="exact DBSCAN up to this many rows (and while its neighbourhoods fit the memory budget); beyond, DBSCAN++ on a core sample")
    dbscan_core_sample: int = Field(20_000, ge=10, description="DBSCAN++: rows (seeded choice) tested as core points; every row joins its nearest core's cluster within eps")
    eps: float | None = Field(None, gt=0, description="DBSCAN eps (default: the knee of the k-distance curve)")
    min_samples: int = Field(10, ge=2, description="DBSCAN min_samples")
    eps_grid: list[float] | None = Field(None, description="eps values of the grid search (default: 0.5x..1.5x the suggested eps)")
    min_samples_grid: list[int] = Field([5, 10, 20], description="min_samples values of the grid search")


class FindingRules(Group):
    """The research thresholds that decide what a finding states."""

    dominant_share: float = Field(0.5, gt=0, lt=1, description="a head is consistent when more than this share of its maps falls in one DBSCAN cluster (the consistency finding)")
    qa_alpha: float = Field(0.05, gt=0, lt=1, description="a head differs between answerable and unanswerable questions where the Benjamini-Hochberg q-value of its permutation test is below this (the QA-heads finding)")
    small_clusters: int = Field(10, ge=1, description="largest DBSCAN clusters after the dominant one whose heads and contexts are measured (the small-clusters finding)")


class Compute(Group):
    """Where the clustering runs."""

    scheduler: str | None = Field(None, description="address of an existing Dask scheduler (default: start a local cluster)")
    backend: Literal["auto", "cpu", "gpu"] = Field("auto", description="'gpu': cuML on LocalCUDACluster; 'cpu': scikit-learn on LocalCluster")
    n_workers: int | None = Field(None, ge=1, description="workers of a local cluster (default: one per GPU or per core)")
    worker_kind: Literal["auto", "processes", "threads"] = Field("auto", description="a local CPU cluster's workers: 'processes', 'threads' of the flow's process (nothing to start), or 'auto': threads where the rows to read hold under 1 GB of float32 embeddings")
    memory_budget: float | None = Field(None, gt=0, description="GB that one process (the flow or a Dask worker) may hold for a stage's arrays; a stage that cannot fit fails at once (default: this machine's memory shared by the workers and the flow)")
