"""The Salesforce sandbox's Pub/Sub API (gRPC): Change Data Capture events over the store's committed changes.

Modules: ``avro`` (event schema, body, bitmaps), ``bus`` (event log, replay ids, retention), ``service`` (the gRPC
servicer), ``server`` (``start_pubsub``), ``admin`` (``event_bus`` and the ``/_admin/pubsub`` routes).
"""

from ml_connector.sandbox.salesforce.pubsub.admin import event_bus
from ml_connector.sandbox.salesforce.pubsub.server import PubSubServer, start_pubsub

__all__ = ["PubSubServer", "event_bus", "start_pubsub"]
