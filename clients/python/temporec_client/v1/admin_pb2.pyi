from temporec_client.v1 import recommender_pb2 as _recommender_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReloadModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReloadModelsResponse(_message.Message):
    __slots__ = ("reloaded", "models", "errors")
    RELOADED_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    reloaded: bool
    models: _containers.RepeatedCompositeFieldContainer[_recommender_pb2.Model]
    errors: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, reloaded: _Optional[bool] = ..., models: _Optional[_Iterable[_Union[_recommender_pb2.Model, _Mapping]]] = ..., errors: _Optional[_Iterable[str]] = ...) -> None: ...
