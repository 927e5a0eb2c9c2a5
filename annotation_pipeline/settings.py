"""Every environment variable the code location reads, read here and nowhere else.

``load_settings()`` reads the environment into one frozen, validated object; a bad value
raises ``SettingsError`` with a message that says what to set. The secret is held apart
from the object's ``repr`` so it never reaches a log line.

| variable | meaning | default |
|---|---|---|
| ``ANNOTATION_PIPELINE_PROFILE`` | ``local`` or ``production``: which resources are used | ``local`` |
| ``ANNOTATION_PIPELINE_ROOT`` | the data root, where every run writes | ``./data/runtime`` |
| ``ANNOTATION_PIPELINE_DATA_DIR`` | files versioned with the code (ontology, guidelines, policies) | the repository's ``data/`` |
| ``ANNOTATION_PIPELINE_PSEUDONYM_SECRET`` | HMAC key of the pseudonyms, at least 32 bytes | none: anonymization refuses to run |
| ``ANNOTATION_PIPELINE_S3_BUCKET`` | bucket of tables, vendor exchange and DVC remote (production) | none: production refuses to start |
| ``AWS_ENDPOINT_URL`` | S3 endpoint (a loopback moto server in tests) | AWS |
| ``ANNOTATION_PIPELINE_VENDOR`` | vendor name under the production profile | ``vendor`` |
| ``ANNOTATION_PIPELINE_DVC_REMOTE`` | DVC remote URL of releases | ``ROOT/dvc-remote``; production ``s3://BUCKET/dvc`` |
| ``ANNOTATION_PIPELINE_S3_PREFIX`` | key prefix of the tables and quarantine in the bucket (production) | ``pipeline`` |
| ``ANNOTATION_PIPELINE_SIMULATE_VENDOR`` | ``1``: the simulated workforce answers batches in the S3 inbox (staging, e2e tests) | ``0`` |
| ``ANNOTATION_PIPELINE_CELERY_BROKER`` | Celery broker of the production executor (RabbitMQ or Redis URL) | ``pyamqp://guest:guest@127.0.0.1:5672//`` |
| ``ANNOTATION_PIPELINE_CELERY_BACKEND`` | Celery result backend of the production executor | ``rpc://`` |
| ``ANNOTATION_PIPELINE_EXECUTOR`` | production steps on ``celery`` workers or as Kubernetes Jobs (``k8s``) | ``celery`` |
| ``ANNOTATION_PIPELINE_VENDOR_EXCHANGE`` | how batches reach the vendor: ``folder`` (local), ``s3`` (production) or ``label_studio`` (a Label Studio server) | the profile's: ``folder`` / ``s3`` |
| ``LABEL_STUDIO_URL`` | the Label Studio server of the ``label_studio`` exchange | ``http://127.0.0.1:8089`` (``.ci/label-studio start``) |
| ``LABEL_STUDIO_API_TOKEN`` | its API token (a secret: never logged) | local profile: the fixed loopback token of ``.ci/label-studio``; production: none, refuses to start |
| ``DAGSTER_HOME`` | the Dagster instance folder | the demo uses ``ROOT/dagster_home`` |
| ``ANNOTATION_PIPELINE_PRELABEL_BACKEND_URL`` | a Label Studio ML backend (``/predict``) that makes the pre-labels | none: the built-in model |
| ``ANNOTATION_PIPELINE_PRELABEL_BACKEND_TOKEN`` | its access token, sent as ``Authorization: Token ...`` | none |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

PROFILES = ("local", "production")
MIN_SECRET_BYTES = 32  # HMAC-SHA256 keys shorter than the hash output weaken it (RFC 2104 §3)

PROFILE_ENV = "ANNOTATION_PIPELINE_PROFILE"
ROOT_ENV = "ANNOTATION_PIPELINE_ROOT"
DATA_DIR_ENV = "ANNOTATION_PIPELINE_DATA_DIR"
SECRET_ENV = "ANNOTATION_PIPELINE_PSEUDONYM_SECRET"
BUCKET_ENV = "ANNOTATION_PIPELINE_S3_BUCKET"
ENDPOINT_ENV = "AWS_ENDPOINT_URL"
VENDOR_ENV = "ANNOTATION_PIPELINE_VENDOR"
DVC_REMOTE_ENV = "ANNOTATION_PIPELINE_DVC_REMOTE"
DAGSTER_HOME_ENV = "DAGSTER_HOME"
S3_PREFIX_ENV = "ANNOTATION_PIPELINE_S3_PREFIX"
SIMULATE_VENDOR_ENV = "ANNOTATION_PIPELINE_SIMULATE_VENDOR"
CELERY_BROKER_ENV = "ANNOTATION_PIPELINE_CELERY_BROKER"
CELERY_BACKEND_ENV = "ANNOTATION_PIPELINE_CELERY_BACKEND"
EXECUTOR_ENV = "ANNOTATION_PIPELINE_EXECUTOR"
PRODUCTION_EXECUTORS = ("celery", "k8s")
VENDOR_EXCHANGE_ENV = "ANNOTATION_PIPELINE_VENDOR_EXCHANGE"
VENDOR_EXCHANGES = {"local": ("folder", "label_studio"), "production": ("s3", "label_studio")}
LABEL_STUDIO_URL_ENV = "LABEL_STUDIO_URL"
LABEL_STUDIO_TOKEN_ENV = "LABEL_STUDIO_API_TOKEN"
DEFAULT_LABEL_STUDIO_URL = "http://127.0.0.1:8089"
# The token `.ci/label-studio start` gives its loopback-only server: not a secret anywhere else.
LOCAL_LABEL_STUDIO_TOKEN = "annotation-pipeline-local-0123456789abcd"
PRELABEL_BACKEND_URL_ENV = "ANNOTATION_PIPELINE_PRELABEL_BACKEND_URL"
PRELABEL_BACKEND_TOKEN_ENV = "ANNOTATION_PIPELINE_PRELABEL_BACKEND_TOKEN"
# The machine's RabbitMQ with its default account; production sets its own URL.
DEFAULT_CELERY_BROKER = "pyamqp://guest:guest@127.0.0.1:5672//"

REPOSITORY_DATA_DIR = Path(__file__).resolve().parent.parent / "data"
DEFAULT_ROOT = Path("./data/runtime")


class SettingsError(ValueError):
    """An environment variable is missing or wrong; the message says what to set."""


class SecretError(SettingsError):
    """The pseudonym secret is missing or unusable (the message never contains the secret)."""


@dataclass(frozen=True)
class Settings:
    profile: str
    data_root: Path
    data_dir: Path
    s3_bucket: str | None
    s3_endpoint_url: str | None
    vendor: str
    dvc_remote_override: str | None
    dagster_home: Path | None
    _secret: str | None = field(default=None, repr=False)
    s3_prefix: str = "pipeline"
    simulate_vendor: bool = False
    # repr=False: a broker URL may carry a password
    celery_broker: str = field(default=DEFAULT_CELERY_BROKER, repr=False)
    celery_backend: str = field(default="rpc://", repr=False)
    celery_broker_from_env: bool = False
    production_executor: str = "celery"
    vendor_exchange: str = "folder"
    label_studio_url: str = DEFAULT_LABEL_STUDIO_URL
    _label_studio_token: str | None = field(default=None, repr=False)

    def label_studio_token(self) -> str:
        """The Label Studio API token; the local profile falls back to the loopback server's token."""
        if self._label_studio_token:
            return self._label_studio_token
        if self.profile == "local":
            return LOCAL_LABEL_STUDIO_TOKEN
        raise SettingsError(f"{LABEL_STUDIO_TOKEN_ENV} is not set: the label_studio vendor exchange of the "
                            f"production profile needs the API token of the server at {self.label_studio_url}")
    # The pre-label model: None is the built-in one; a URL an external Label Studio ML backend.
    prelabel_backend_url: str | None = None
    prelabel_backend_token: str | None = field(default=None, repr=False)

    def celery_broker_config(self) -> str | dict:
        """The broker as Dagster config: an ``{"env": ...}`` reference when the variable is set, so
        a URL with a password never lands in a job's config; else the machine's default RabbitMQ."""
        return {"env": CELERY_BROKER_ENV} if self.celery_broker_from_env else self.celery_broker

    def pseudonym_secret(self) -> bytes:
        """The pseudonym key, validated; raises SettingsError naming the variable."""
        hint = ('generate one with: python -c "import secrets; print(secrets.token_hex(32))" and keep '
                "it in your secret manager; the same secret keeps pseudonyms stable across runs")
        if not self._secret or not self._secret.strip():
            raise SecretError(f"{SECRET_ENV} is not set; {hint}")
        secret = self._secret.strip().encode("utf-8")
        if len(secret) < MIN_SECRET_BYTES:
            raise SecretError(f"{SECRET_ENV} is {len(secret)} bytes long, at least {MIN_SECRET_BYTES} are "
                              f"required; {hint}")
        return secret

    @property
    def has_pseudonym_secret(self) -> bool:
        return bool(self._secret)

    def require_bucket(self) -> str:
        if not self.s3_bucket:
            raise SettingsError(f"{BUCKET_ENV} is not set: the production profile keeps tables, vendor "
                                "exchange and releases in that S3 bucket")
        return self.s3_bucket

    def dvc_remote(self) -> str:
        """Where releases are pushed: the override, else the profile's default."""
        if self.dvc_remote_override:
            return self.dvc_remote_override
        if self.profile == "production":
            return f"s3://{self.require_bucket()}/dvc"
        from annotation_pipeline.layout import DataLayout  # layout imports settings lazily: no cycle

        return str(DataLayout(self.data_root).local_dvc_remote)


def load_settings(env: Mapping[str, str] | None = None, *, root: Path | str | None = None,
                  profile: str | None = None) -> Settings:
    """Read and validate the environment; ``root`` and ``profile`` override it (CLI options, tests)."""
    env = os.environ if env is None else env
    chosen = profile or env.get(PROFILE_ENV) or "local"
    if chosen not in PROFILES:
        raise SettingsError(f"{PROFILE_ENV}={chosen!r}: expected one of {', '.join(PROFILES)}")
    data_root = Path(root if root is not None else (env.get(ROOT_ENV) or DEFAULT_ROOT)).expanduser().resolve()
    data_dir = Path(env.get(DATA_DIR_ENV) or REPOSITORY_DATA_DIR).expanduser().resolve()
    home = env.get(DAGSTER_HOME_ENV)
    return Settings(
        profile=chosen, data_root=data_root, data_dir=data_dir,
        s3_bucket=env.get(BUCKET_ENV) or None, s3_endpoint_url=env.get(ENDPOINT_ENV) or None,
        vendor=env.get(VENDOR_ENV) or "vendor", dvc_remote_override=env.get(DVC_REMOTE_ENV) or None,
        dagster_home=Path(home).expanduser().resolve() if home else None,
        _secret=env.get(SECRET_ENV) or None,
        s3_prefix=(env.get(S3_PREFIX_ENV) or "pipeline").strip("/"),
        simulate_vendor=_flag(env, SIMULATE_VENDOR_ENV),
        celery_broker=env.get(CELERY_BROKER_ENV) or DEFAULT_CELERY_BROKER,
        celery_backend=env.get(CELERY_BACKEND_ENV) or "rpc://",
        celery_broker_from_env=bool(env.get(CELERY_BROKER_ENV)),
        production_executor=_choice(env, EXECUTOR_ENV, PRODUCTION_EXECUTORS),
        vendor_exchange=_choice(env, VENDOR_EXCHANGE_ENV, VENDOR_EXCHANGES[chosen]),
        label_studio_url=(env.get(LABEL_STUDIO_URL_ENV) or DEFAULT_LABEL_STUDIO_URL).rstrip("/"),
        _label_studio_token=env.get(LABEL_STUDIO_TOKEN_ENV) or None,
        prelabel_backend_url=_http_url(env, PRELABEL_BACKEND_URL_ENV),
        prelabel_backend_token=env.get(PRELABEL_BACKEND_TOKEN_ENV) or None,
    )


def _http_url(env: Mapping[str, str], name: str) -> str | None:
    value = (env.get(name) or "").strip()
    if value and not value.startswith(("http://", "https://")):
        raise SettingsError(f"{name}={value!r}: expected an http:// or https:// URL")
    return value or None


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    value = env.get(name) or choices[0]
    if value not in choices:
        raise SettingsError(f"{name}={value!r}: expected one of {', '.join(choices)}")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = (env.get(name) or "0").strip().lower()
    if value not in ("0", "1", "true", "false", "yes", "no"):
        raise SettingsError(f"{name}={value!r}: expected 1 or 0")
    return value in ("1", "true", "yes")


def silence_phone_home() -> None:
    """No internet on these machines: libraries that phone home must not wait on it."""
    for name, value in (("DVC_NO_ANALYTICS", "1"), ("GX_ANALYTICS_ENABLED", "false"),
                        ("DAGSTER_DISABLE_TELEMETRY", "1")):
        os.environ.setdefault(name, value)


def set_for_this_process(name: str, value: str) -> None:
    """For the demo: give a library (Dagster) a variable it reads itself, e.g. DAGSTER_HOME."""
    os.environ[name] = value
