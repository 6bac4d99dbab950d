"""Events: the webhook receiver, its inbox, and channels registered with (and renewed at) a source system."""
