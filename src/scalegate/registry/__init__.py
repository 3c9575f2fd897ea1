"""The public registry: a monitor that follows many labs' logs, audits them as they grow,
and keeps what it found (:class:`Monitor`, :class:`RegistryStore`), configured by
:func:`load_config`."""

from scalegate.registry.config import FollowedLog, RegistryConfig, load_config
from scalegate.registry.monitor import Monitor
from scalegate.registry.store import Event, LogRecord, RegistryStore

__all__ = ["Event", "FollowedLog", "LogRecord", "Monitor", "RegistryConfig", "RegistryStore",
           "load_config"]
