from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Event(_message.Message):
    __slots__ = ("item_id", "action", "timestamp_ms", "text")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    action: str
    timestamp_ms: int
    text: str
    def __init__(self, item_id: _Optional[str] = ..., action: _Optional[str] = ..., timestamp_ms: _Optional[int] = ..., text: _Optional[str] = ...) -> None: ...

class RecommendRequest(_message.Message):
    __slots__ = ("domain", "head", "encoder", "user_id", "history", "candidate_item_ids", "k", "allow_repeats", "retail_options", "news_options", "customer_service_options", "plugin_options", "explain", "explain_events")
    class PluginOptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    ENCODER_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    ALLOW_REPEATS_FIELD_NUMBER: _ClassVar[int]
    RETAIL_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    NEWS_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_SERVICE_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    PLUGIN_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_EVENTS_FIELD_NUMBER: _ClassVar[int]
    domain: str
    head: str
    encoder: str
    user_id: str
    history: _containers.RepeatedCompositeFieldContainer[Event]
    candidate_item_ids: _containers.RepeatedScalarFieldContainer[str]
    k: int
    allow_repeats: bool
    retail_options: RetailOptions
    news_options: NewsOptions
    customer_service_options: CustomerServiceOptions
    plugin_options: _containers.ScalarMap[str, str]
    explain: bool
    explain_events: int
    def __init__(self, domain: _Optional[str] = ..., head: _Optional[str] = ..., encoder: _Optional[str] = ..., user_id: _Optional[str] = ..., history: _Optional[_Iterable[_Union[Event, _Mapping]]] = ..., candidate_item_ids: _Optional[_Iterable[str]] = ..., k: _Optional[int] = ..., allow_repeats: _Optional[bool] = ..., retail_options: _Optional[_Union[RetailOptions, _Mapping]] = ..., news_options: _Optional[_Union[NewsOptions, _Mapping]] = ..., customer_service_options: _Optional[_Union[CustomerServiceOptions, _Mapping]] = ..., plugin_options: _Optional[_Mapping[str, str]] = ..., explain: _Optional[bool] = ..., explain_events: _Optional[int] = ...) -> None: ...

class RetailOptions(_message.Message):
    __slots__ = ("categories", "exclude_item_ids", "out_of_stock", "remind_cart")
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    OUT_OF_STOCK_FIELD_NUMBER: _ClassVar[int]
    REMIND_CART_FIELD_NUMBER: _ClassVar[int]
    categories: _containers.RepeatedScalarFieldContainer[str]
    exclude_item_ids: _containers.RepeatedScalarFieldContainer[str]
    out_of_stock: _containers.RepeatedScalarFieldContainer[str]
    remind_cart: bool
    def __init__(self, categories: _Optional[_Iterable[str]] = ..., exclude_item_ids: _Optional[_Iterable[str]] = ..., out_of_stock: _Optional[_Iterable[str]] = ..., remind_cart: _Optional[bool] = ...) -> None: ...

class NewsOptions(_message.Message):
    __slots__ = ("max_age_days",)
    MAX_AGE_DAYS_FIELD_NUMBER: _ClassVar[int]
    max_age_days: float
    def __init__(self, max_age_days: _Optional[float] = ...) -> None: ...

class CustomerServiceOptions(_message.Message):
    __slots__ = ("handoff_threshold", "exclude_item_ids")
    HANDOFF_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    handoff_threshold: float
    exclude_item_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, handoff_threshold: _Optional[float] = ..., exclude_item_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class Contribution(_message.Message):
    __slots__ = ("history_index", "item_id", "weight")
    HISTORY_INDEX_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    history_index: int
    item_id: str
    weight: float
    def __init__(self, history_index: _Optional[int] = ..., item_id: _Optional[str] = ..., weight: _Optional[float] = ...) -> None: ...

class HandOff(_message.Message):
    __slots__ = ("recommended", "confidence", "threshold", "reason")
    RECOMMENDED_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    recommended: bool
    confidence: float
    threshold: float
    reason: str
    def __init__(self, recommended: _Optional[bool] = ..., confidence: _Optional[float] = ..., threshold: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...

class RecommendedItem(_message.Message):
    __slots__ = ("item_id", "score", "text", "contributions")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    score: float
    text: str
    contributions: _containers.RepeatedCompositeFieldContainer[Contribution]
    def __init__(self, item_id: _Optional[str] = ..., score: _Optional[float] = ..., text: _Optional[str] = ..., contributions: _Optional[_Iterable[_Union[Contribution, _Mapping]]] = ...) -> None: ...

class StageTiming(_message.Message):
    __slots__ = ("stage", "milliseconds")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    MILLISECONDS_FIELD_NUMBER: _ClassVar[int]
    stage: str
    milliseconds: float
    def __init__(self, stage: _Optional[str] = ..., milliseconds: _Optional[float] = ...) -> None: ...

class RecommendResponse(_message.Message):
    __slots__ = ("items", "domain", "head", "encoder", "model_version", "cold_start", "candidate_source", "rules_applied", "timings", "hand_off", "history_source", "experiment", "arm")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    ENCODER_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    COLD_START_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    RULES_APPLIED_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    HAND_OFF_FIELD_NUMBER: _ClassVar[int]
    HISTORY_SOURCE_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    ARM_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[RecommendedItem]
    domain: str
    head: str
    encoder: str
    model_version: str
    cold_start: bool
    candidate_source: str
    rules_applied: _containers.RepeatedScalarFieldContainer[str]
    timings: _containers.RepeatedCompositeFieldContainer[StageTiming]
    hand_off: HandOff
    history_source: str
    experiment: str
    arm: str
    def __init__(self, items: _Optional[_Iterable[_Union[RecommendedItem, _Mapping]]] = ..., domain: _Optional[str] = ..., head: _Optional[str] = ..., encoder: _Optional[str] = ..., model_version: _Optional[str] = ..., cold_start: _Optional[bool] = ..., candidate_source: _Optional[str] = ..., rules_applied: _Optional[_Iterable[str]] = ..., timings: _Optional[_Iterable[_Union[StageTiming, _Mapping]]] = ..., hand_off: _Optional[_Union[HandOff, _Mapping]] = ..., history_source: _Optional[str] = ..., experiment: _Optional[str] = ..., arm: _Optional[str] = ...) -> None: ...

class ListComponentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Component(_message.Message):
    __slots__ = ("name", "plugin", "description", "details")
    class DetailsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    PLUGIN_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    name: str
    plugin: str
    description: str
    details: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., plugin: _Optional[str] = ..., description: _Optional[str] = ..., details: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Model(_message.Message):
    __slots__ = ("domain", "head", "encoder", "version", "data_name", "data_fingerprint", "metrics", "items", "created")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    ENCODER_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DATA_NAME_FIELD_NUMBER: _ClassVar[int]
    DATA_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    domain: str
    head: str
    encoder: str
    version: str
    data_name: str
    data_fingerprint: str
    metrics: _containers.ScalarMap[str, float]
    items: int
    created: str
    def __init__(self, domain: _Optional[str] = ..., head: _Optional[str] = ..., encoder: _Optional[str] = ..., version: _Optional[str] = ..., data_name: _Optional[str] = ..., data_fingerprint: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., items: _Optional[int] = ..., created: _Optional[str] = ...) -> None: ...

class ListComponentsResponse(_message.Message):
    __slots__ = ("encoders", "heads", "domains", "models")
    ENCODERS_FIELD_NUMBER: _ClassVar[int]
    HEADS_FIELD_NUMBER: _ClassVar[int]
    DOMAINS_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    encoders: _containers.RepeatedCompositeFieldContainer[Component]
    heads: _containers.RepeatedCompositeFieldContainer[Component]
    domains: _containers.RepeatedCompositeFieldContainer[Component]
    models: _containers.RepeatedCompositeFieldContainer[Model]
    def __init__(self, encoders: _Optional[_Iterable[_Union[Component, _Mapping]]] = ..., heads: _Optional[_Iterable[_Union[Component, _Mapping]]] = ..., domains: _Optional[_Iterable[_Union[Component, _Mapping]]] = ..., models: _Optional[_Iterable[_Union[Model, _Mapping]]] = ...) -> None: ...

class EncodeRequest(_message.Message):
    __slots__ = ("texts", "encoder", "model_version")
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    ENCODER_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    encoder: str
    model_version: str
    def __init__(self, texts: _Optional[_Iterable[str]] = ..., encoder: _Optional[str] = ..., model_version: _Optional[str] = ...) -> None: ...

class Embedding(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class EncodeResponse(_message.Message):
    __slots__ = ("embeddings", "encoder", "dim")
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    ENCODER_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    embeddings: _containers.RepeatedCompositeFieldContainer[Embedding]
    encoder: str
    dim: int
    def __init__(self, embeddings: _Optional[_Iterable[_Union[Embedding, _Mapping]]] = ..., encoder: _Optional[str] = ..., dim: _Optional[int] = ...) -> None: ...

class TrackedEvent(_message.Message):
    __slots__ = ("user_id", "event_id", "item_id", "action", "timestamp_ms", "text")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    event_id: str
    item_id: str
    action: str
    timestamp_ms: int
    text: str
    def __init__(self, user_id: _Optional[str] = ..., event_id: _Optional[str] = ..., item_id: _Optional[str] = ..., action: _Optional[str] = ..., timestamp_ms: _Optional[int] = ..., text: _Optional[str] = ...) -> None: ...

class TrackRequest(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[TrackedEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[TrackedEvent, _Mapping]]] = ...) -> None: ...

class TrackResponse(_message.Message):
    __slots__ = ("stored", "duplicates", "expired")
    STORED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_FIELD_NUMBER: _ClassVar[int]
    stored: int
    duplicates: int
    expired: int
    def __init__(self, stored: _Optional[int] = ..., duplicates: _Optional[int] = ..., expired: _Optional[int] = ...) -> None: ...

class TrackStreamRequest(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[TrackedEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[TrackedEvent, _Mapping]]] = ...) -> None: ...

class TrackStreamResponse(_message.Message):
    __slots__ = ("stored", "duplicates", "expired", "messages")
    STORED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    stored: int
    duplicates: int
    expired: int
    messages: int
    def __init__(self, stored: _Optional[int] = ..., duplicates: _Optional[int] = ..., expired: _Optional[int] = ..., messages: _Optional[int] = ...) -> None: ...

class GetHistoryRequest(_message.Message):
    __slots__ = ("user_id", "limit")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    limit: int
    def __init__(self, user_id: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class GetHistoryResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[TrackedEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[TrackedEvent, _Mapping]]] = ...) -> None: ...

class ForgetUserRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class ForgetUserResponse(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: int
    def __init__(self, removed: _Optional[int] = ...) -> None: ...
