from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MonitoredText(_message.Message):
    __slots__ = ("id", "text", "timestamp_ms", "source")
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    id: str
    text: str
    timestamp_ms: int
    source: str
    def __init__(self, id: _Optional[str] = ..., text: _Optional[str] = ..., timestamp_ms: _Optional[int] = ..., source: _Optional[str] = ...) -> None: ...

class IngestRequest(_message.Message):
    __slots__ = ("texts",)
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedCompositeFieldContainer[MonitoredText]
    def __init__(self, texts: _Optional[_Iterable[_Union[MonitoredText, _Mapping]]] = ...) -> None: ...

class IngestResponse(_message.Message):
    __slots__ = ("stored", "duplicates", "late", "labels", "alerts", "messages")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    STORED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    LATE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    stored: int
    duplicates: int
    late: int
    labels: _containers.ScalarMap[str, int]
    alerts: int
    messages: int
    def __init__(self, stored: _Optional[int] = ..., duplicates: _Optional[int] = ..., late: _Optional[int] = ..., labels: _Optional[_Mapping[str, int]] = ..., alerts: _Optional[int] = ..., messages: _Optional[int] = ...) -> None: ...

class WatchAlertsRequest(_message.Message):
    __slots__ = ("subscriber_id", "topics")
    SUBSCRIBER_ID_FIELD_NUMBER: _ClassVar[int]
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    subscriber_id: str
    topics: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, subscriber_id: _Optional[str] = ..., topics: _Optional[_Iterable[str]] = ...) -> None: ...

class WatchAlertsResponse(_message.Message):
    __slots__ = ("alert",)
    ALERT_FIELD_NUMBER: _ClassVar[int]
    alert: Alert
    def __init__(self, alert: _Optional[_Union[Alert, _Mapping]] = ...) -> None: ...

class Alert(_message.Message):
    __slots__ = ("sequence", "topic", "window_start_ms", "window_end_ms", "kind", "observed", "expected", "low", "high", "count", "negatives", "model", "texts")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_MS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_MS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FIELD_NUMBER: _ClassVar[int]
    LOW_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    NEGATIVES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    topic: str
    window_start_ms: int
    window_end_ms: int
    kind: str
    observed: float
    expected: float
    low: float
    high: float
    count: int
    negatives: int
    model: str
    texts: _containers.RepeatedCompositeFieldContainer[AlertText]
    def __init__(self, sequence: _Optional[int] = ..., topic: _Optional[str] = ..., window_start_ms: _Optional[int] = ..., window_end_ms: _Optional[int] = ..., kind: _Optional[str] = ..., observed: _Optional[float] = ..., expected: _Optional[float] = ..., low: _Optional[float] = ..., high: _Optional[float] = ..., count: _Optional[int] = ..., negatives: _Optional[int] = ..., model: _Optional[str] = ..., texts: _Optional[_Iterable[_Union[AlertText, _Mapping]]] = ...) -> None: ...

class AlertText(_message.Message):
    __slots__ = ("id", "text", "timestamp_ms", "source", "negative_probability")
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    id: str
    text: str
    timestamp_ms: int
    source: str
    negative_probability: float
    def __init__(self, id: _Optional[str] = ..., text: _Optional[str] = ..., timestamp_ms: _Optional[int] = ..., source: _Optional[str] = ..., negative_probability: _Optional[float] = ...) -> None: ...

class AcknowledgeAlertsRequest(_message.Message):
    __slots__ = ("subscriber_id", "sequence")
    SUBSCRIBER_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    subscriber_id: str
    sequence: int
    def __init__(self, subscriber_id: _Optional[str] = ..., sequence: _Optional[int] = ...) -> None: ...

class AcknowledgeAlertsResponse(_message.Message):
    __slots__ = ("acknowledged",)
    ACKNOWLEDGED_FIELD_NUMBER: _ClassVar[int]
    acknowledged: int
    def __init__(self, acknowledged: _Optional[int] = ...) -> None: ...

class GetTopicSeriesRequest(_message.Message):
    __slots__ = ("topic",)
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    topic: str
    def __init__(self, topic: _Optional[str] = ...) -> None: ...

class TopicWindow(_message.Message):
    __slots__ = ("window_start_ms", "count", "negatives", "count_expected", "count_high", "share_expected", "share_high")
    WINDOW_START_MS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    NEGATIVES_FIELD_NUMBER: _ClassVar[int]
    COUNT_EXPECTED_FIELD_NUMBER: _ClassVar[int]
    COUNT_HIGH_FIELD_NUMBER: _ClassVar[int]
    SHARE_EXPECTED_FIELD_NUMBER: _ClassVar[int]
    SHARE_HIGH_FIELD_NUMBER: _ClassVar[int]
    window_start_ms: int
    count: int
    negatives: int
    count_expected: float
    count_high: float
    share_expected: float
    share_high: float
    def __init__(self, window_start_ms: _Optional[int] = ..., count: _Optional[int] = ..., negatives: _Optional[int] = ..., count_expected: _Optional[float] = ..., count_high: _Optional[float] = ..., share_expected: _Optional[float] = ..., share_high: _Optional[float] = ...) -> None: ...

class GetTopicSeriesResponse(_message.Message):
    __slots__ = ("topic", "windows", "topics")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_FIELD_NUMBER: _ClassVar[int]
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    topic: str
    windows: _containers.RepeatedCompositeFieldContainer[TopicWindow]
    topics: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, topic: _Optional[str] = ..., windows: _Optional[_Iterable[_Union[TopicWindow, _Mapping]]] = ..., topics: _Optional[_Iterable[str]] = ...) -> None: ...
