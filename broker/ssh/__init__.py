"""The asyncssh SSH broker: `SSHBroker(BrokerConfig.build(...))`, see broker.ssh.server."""
from broker.ssh.config import BrokerConfig
from broker.ssh.server import SSHBroker

__all__ = ["BrokerConfig", "SSHBroker"]
