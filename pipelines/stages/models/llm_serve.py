"""A stage that sends requests to a model's warm deployment in the farm's Serve LLM application.

For a model whose registry entry says ``batch_engine: serve``: no engine is
started for the batch; ``ray.data.llm``'s ``ServeDeploymentProcessorConfig``
calls the ``LLMServer`` deployment that ``ray.serve.llm``'s
``build_openai_app`` made for the model in the application
:data:`serve.config.LLM_APP` — the same replicas the online API uses, with
vLLM's own request models (``ChatCompletionRequest`` / ``CompletionRequest``).

Rows in: ``request`` (an OpenAI chat or completions body, ``model`` being the
registry name) and ``request_id``. Rows out, as the job stage's rows:
``generated_text``, ``finish_reason`` (vLLM's own), ``num_input_tokens``,
``num_generated_tokens``, and ``error`` for a request the deployment refused
(say, a prompt past the context; the others go on).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from serve.config import LLM_APP
from serve.registry import ModelSpec

if TYPE_CHECKING:
    from ray.data import Dataset
    from ray.data.llm import ServeDeploymentProcessorConfig

#: Batches of one block that Ray Data's async actor works at once
#: (RAY_DATA_DEFAULT_ASYNC_BATCH_UDF_MAX_CONCURRENCY); an actor works one block at a time.
CALLS_PER_BLOCK = 4
#: Rows per block: results leave the actor a block at a time, so they stream back in blocks this size.
BLOCK_ROWS = 64
#: Health states of a deployment that answers requests.
SERVING = frozenset({"HEALTHY", "UPSCALING", "DOWNSCALING"})

Row = dict[str, Any]


class DeploymentUnavailable(RuntimeError):
    """The model's deployment is not running in the farm's Serve LLM application."""


def deployment_name(spec: ModelSpec) -> str:
    """The name ``ray.serve.llm``'s ``build_openai_app`` gives ``spec``'s ``LLMServer`` deployment."""
    return "LLMServer:" + spec.name.replace("/", "--").replace(".", "_")


def in_flight(spec: ModelSpec) -> int:
    """Requests one batch keeps at the deployment: twice what its replicas take at once, within its queue.

    Enough that a replica never waits for the next request, few enough that
    online callers still get their turn, that the caller's handle is never
    refused for a full queue (``max_queued_requests``), and that the requests
    a killed runner left behind end within seconds.
    """
    take = spec.max_ongoing_requests * spec.max_replicas
    return max(CALLS_PER_BLOCK, min(2 * take, take + spec.max_queued_requests))


def check_running(spec: ModelSpec, app: str = LLM_APP) -> None:
    """Raise :class:`DeploymentUnavailable`, naming the application and model, unless its deployment serves.

    Connect to Ray first.
    """
    from ray import serve

    name = deployment_name(spec)

    def unavailable(why: str) -> DeploymentUnavailable:
        return DeploymentUnavailable(
            f"model {spec.name!r} runs its batches on its deployment {name!r} of the Serve application {app!r} "
            f"(batch_engine: serve), but {why}; start the farm's Serve applications (farm up deploys them), "
            "or set batch_engine: job for this model")

    try:
        applications = serve.status().applications
    except Exception as exc:  # no Serve instance on this cluster
        raise unavailable(f"Serve is not running on this cluster ({exc})") from None
    status = applications.get(app)
    if status is None:
        raise unavailable("that application is not deployed")
    deployment = status.deployments.get(name)
    if deployment is None:
        raise unavailable(f"that application has no such deployment (it has: {', '.join(sorted(status.deployments)) or 'none'})")
    state = str(getattr(deployment.status, "value", deployment.status))
    if state not in SERVING:
        raise unavailable(f"that deployment is {state}")


def _response(row: Row) -> Row:
    """A deployment's answer (a chat/completion response, or vLLM's error response) → the stage's output columns."""
    error = row.get("error")
    if error:
        return {"error": error.get("message") if isinstance(error, dict) else str(error)}
    choice = (row.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    usage = row.get("usage") or {}
    return {
        "generated_text": (message.get("content") if "message" in choice else choice.get("text")) or "",
        "finish_reason": choice.get("finish_reason"),
        "num_input_tokens": int(usage.get("prompt_tokens") or 0),
        "num_generated_tokens": int(usage.get("completion_tokens") or 0),
        "error": None,
    }


@dataclass(frozen=True)
class ServeLLMStage:
    """One model's Serve deployment over a dataset of requests; ``chat`` calls ``chat``, else ``completions``."""

    spec: ModelSpec
    chat: bool = True
    app: str = LLM_APP

    @property
    def batch_rows(self) -> int:
        """Rows per deployment call batch, so that one actor holds at most :func:`in_flight` requests."""
        return max(1, in_flight(self.spec) // CALLS_PER_BLOCK)

    def config(self) -> ServeDeploymentProcessorConfig:
        from ray.data.llm import ServeDeploymentProcessorConfig

        return ServeDeploymentProcessorConfig(
            deployment_name=deployment_name(self.spec), app_name=self.app,
            dtype_mapping={"ChatCompletionRequest": ChatRequest, "CompletionRequest": CompletionRequest},
            batch_size=self.batch_rows, concurrency=1, should_continue_on_error=True,
        )

    def __call__(self, ds: Dataset, *, preprocess: Callable[[Row], Row], postprocess: Callable[[Row], Row]) -> Dataset:
        """The answers to ``ds``'s rows, block after block as the deployment finishes them."""
        from ray.data.llm import build_processor

        method, dtype = ("chat", "ChatCompletionRequest") if self.chat else ("completions", "CompletionRequest")

        def to_request(row: Row) -> Row:
            out = preprocess(row)
            request = {**out.pop("request"), "stream": False, "request_id": out.pop("request_id")}
            return {**out, "method": method, "dtype": dtype, "request_kwargs": request}

        def from_response(row: Row) -> Row:
            return postprocess({**row, **_response(row)})

        processor = build_processor(self.config(), preprocess=to_request, postprocess=from_response)
        return processor(ds.repartition(target_num_rows_per_block=BLOCK_ROWS))


class _Call:
    """``fn(*args)`` on unpickling: a reference by name that the pickling side never has to import."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return self.fn, self.args


class _VLLMRequest:
    """A request that becomes vLLM's own request model where it is unpickled: in the Serve replica.

    ``LLMServer`` takes vLLM's ``ChatCompletionRequest`` / ``CompletionRequest``;
    building it in the Ray Data actor would import vLLM there (some 12 s of
    CPU per actor, per batch attempt, on a small node). This object carries
    the fields and pickles as "import the model from ``ray.serve.llm`` and
    validate them", which the replica, vLLM already loaded, does on arrival.
    The lines were validated at submit with the online route's request model.
    """

    MODEL = ""

    def __init__(self, **fields: Any) -> None:
        self.fields = fields

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        import importlib
        import operator

        model = _Call(getattr, _Call(importlib.import_module, "ray.serve.llm.openai_api_models"), self.MODEL)
        return operator.call, (_Call(getattr, model, "model_validate"), self.fields)


class ChatRequest(_VLLMRequest):
    """vLLM's ``ChatCompletionRequest``, once in the replica."""

    MODEL = "ChatCompletionRequest"


class CompletionRequest(_VLLMRequest):
    """vLLM's ``CompletionRequest``, once in the replica."""

    MODEL = "CompletionRequest"
