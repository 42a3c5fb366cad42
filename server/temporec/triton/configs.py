"""The ``config.pbtxt`` of each model that ``temporec export-triton`` writes.

Each config is built as Triton's own ``ModelConfig`` protobuf (from ``tritonclient``) and
written in protobuf text format, so a misspelt field cannot reach a file, and reading a
file back is the same parse that Triton does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from temporec.contract.errors import InvalidArgument, allowed

CONFIG_FILE = "config.pbtxt"
INSTANCE_KINDS = {"cpu": mc.ModelInstanceGroup.KIND_CPU, "gpu": mc.ModelInstanceGroup.KIND_GPU}
TENSORRT_PRECISIONS = ("fp16", "fp32")

#: The tensor names of the two interfaces the ``triton`` encoder speaks.
TEXT, EMBEDDING = "TEXT", "EMBEDDING"
INPUT_IDS, ATTENTION_MASK, HIDDEN = "input_ids", "attention_mask", "last_hidden_state"
#: Config parameters the ``triton`` encoder reads: its vector space and token budget.
MODEL_ID_PARAMETER = "temporec_model_id"


@dataclass
class Serving:
    """How Triton runs a model: batch limit, batching delay, instances."""

    max_batch_size: int = 64
    max_queue_delay_us: int = 2000
    instance_kind: str = "cpu"  # "cpu" or "gpu"
    instances: int = 1

    def __post_init__(self):
        if self.instance_kind not in INSTANCE_KINDS:
            raise InvalidArgument(
                f"instance kind: {self.instance_kind!r} is not allowed; allowed: {allowed(INSTANCE_KINDS)}"
            )
        for field_name in ("max_batch_size", "instances"):
            if getattr(self, field_name) < 1:
                raise InvalidArgument(f"{field_name}: must be at least 1, got {getattr(self, field_name)}")
        if self.max_queue_delay_us < 0:
            raise InvalidArgument(f"max_queue_delay_us: must not be negative, got {self.max_queue_delay_us}")


def python_encoder(
    name: str, interface: str, dim: int, max_length: int, model_id: str, serving: Serving
) -> mc.ModelConfig:
    """The Python-backend Hugging Face encoder (``backends/hf_encoder.py``):
    ``interface`` "text" (TEXT -> EMBEDDING) or "tokens" (input_ids, attention_mask ->
    last_hidden_state)."""
    config = _base(name, serving, backend="python")
    if interface == "text":
        _add(config.input, TEXT, mc.TYPE_STRING, [1])
        _add(config.output, EMBEDDING, mc.TYPE_FP32, [dim])
    else:
        _token_inputs(config)
        _add(config.output, HIDDEN, mc.TYPE_FP32, [-1, dim])
    _parameters(config, interface=interface, max_length=str(max_length), temporec_model_id=model_id)
    _instances(config, serving)
    return config


def onnx_encoder(name: str, dim: int, model_id: str, serving: Serving, tensorrt: str = "") -> mc.ModelConfig:
    """The ONNX encoder on ONNX Runtime: input_ids, attention_mask (dynamic batch and
    length) -> last_hidden_state; ``tensorrt`` "fp16"/"fp32" adds the TensorRT accelerator."""
    config = _base(name, serving, platform="onnxruntime_onnx")
    _token_inputs(config)
    _add(config.output, HIDDEN, mc.TYPE_FP32, [-1, dim])
    _parameters(config, temporec_model_id=model_id)
    _instances(config, serving)
    if tensorrt:
        if tensorrt not in TENSORRT_PRECISIONS:
            raise InvalidArgument(f"tensorrt: {tensorrt!r} is not allowed; allowed: {allowed(TENSORRT_PRECISIONS)}")
        if serving.instance_kind != "gpu":
            raise InvalidArgument("tensorrt: the TensorRT accelerator needs GPU instances (instance kind 'gpu')")
        accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
        accelerator.parameters["precision_mode"] = tensorrt.upper()
        accelerator.parameters["max_workspace_size_bytes"] = str(1 << 30)
    return config


def tokenizer(name: str, max_length: int, serving: Serving) -> mc.ModelConfig:
    """The ensemble's first step (``backends/tokenizer.py``): TEXT -> input_ids,
    attention_mask padded to ``max_length``. Always on the CPU."""
    config = _base(name, serving, backend="python")
    _add(config.input, TEXT, mc.TYPE_STRING, [1])
    _add(config.output, INPUT_IDS, mc.TYPE_INT64, [max_length])
    _add(config.output, ATTENTION_MASK, mc.TYPE_INT64, [max_length])
    _parameters(config, max_length=str(max_length))
    config.instance_group.add(kind=INSTANCE_KINDS["cpu"], count=1)
    return config


def pooling(name: str, dim: int, serving: Serving) -> mc.ModelConfig:
    """The ensemble's last step (``backends/pooling.py``): last_hidden_state,
    attention_mask -> EMBEDDING. Always on the CPU."""
    config = _base(name, serving, backend="python")
    _add(config.input, HIDDEN, mc.TYPE_FP32, [-1, dim])
    _add(config.input, ATTENTION_MASK, mc.TYPE_INT64, [-1])
    _add(config.output, EMBEDDING, mc.TYPE_FP32, [dim])
    config.instance_group.add(kind=INSTANCE_KINDS["cpu"], count=1)
    return config


def ensemble(name: str, dim: int, model_id: str, steps: tuple[str, str, str], max_batch_size: int) -> mc.ModelConfig:
    """TEXT -> tokenizer -> ONNX encoder -> pooling -> EMBEDDING, as one model that accepts
    text; ``steps`` names the three models."""
    config = mc.ModelConfig(name=name, platform="ensemble", max_batch_size=max_batch_size)
    _add(config.input, TEXT, mc.TYPE_STRING, [1])
    _add(config.output, EMBEDDING, mc.TYPE_FP32, [dim])
    _parameters(config, temporec_model_id=model_id)
    tokenize, encode, pool = steps
    wiring = [
        (tokenize, [TEXT], [INPUT_IDS, ATTENTION_MASK]),
        (encode, [INPUT_IDS, ATTENTION_MASK], [HIDDEN]),
        (pool, [HIDDEN, ATTENTION_MASK], [EMBEDDING]),
    ]
    for model, inputs, outputs in wiring:
        step = config.ensemble_scheduling.step.add(model_name=model, model_version=-1)
        step.input_map.update({tensor: tensor for tensor in inputs})
        step.output_map.update({tensor: tensor for tensor in outputs})
    return config


def write(config: mc.ModelConfig, model_dir: Path) -> Path:
    path = model_dir / CONFIG_FILE
    path.write_text(text_format.MessageToString(config))
    return path


def read(path: Path) -> mc.ModelConfig:
    """Parse a ``config.pbtxt`` as Triton's ModelConfig; errors name the file and line."""
    try:
        return text_format.Parse(path.read_text(), mc.ModelConfig())
    except text_format.ParseError as exc:
        raise InvalidArgument(f"{path}:{exc}") from exc
    except OSError as exc:
        raise InvalidArgument(f"{path}: cannot read it: {exc.strerror}") from exc


def _base(name: str, serving: Serving, **kind: str) -> mc.ModelConfig:
    config = mc.ModelConfig(name=name, max_batch_size=serving.max_batch_size, **kind)
    config.dynamic_batching.max_queue_delay_microseconds = serving.max_queue_delay_us
    return config


def _add(tensors, name: str, data_type: int, dims: list[int]) -> None:
    tensors.add(name=name, data_type=data_type, dims=dims)


def _token_inputs(config: mc.ModelConfig) -> None:
    _add(config.input, INPUT_IDS, mc.TYPE_INT64, [-1])
    _add(config.input, ATTENTION_MASK, mc.TYPE_INT64, [-1])


def _parameters(config: mc.ModelConfig, **values: str) -> None:
    for key, value in values.items():
        config.parameters[key].string_value = value


def _instances(config: mc.ModelConfig, serving: Serving) -> None:
    config.instance_group.add(kind=INSTANCE_KINDS[serving.instance_kind], count=serving.instances)
