"""The fixed credentials of the Adobe Commerce sandbox (one integration, one IMS client, one SaaS tenant).

They are fixed so that connector specs, tests and the demo can name them; they open nothing but this sandbox.
Integration values are 32-character alphanumerics, as Commerce generates them (facts §1.2).
"""

from __future__ import annotations

# PaaS: the activated Integration (OAuth 1.0a; never expires)
CONSUMER_ID = 1  # the integration's consumer id, named in "nonce already used" errors
CONSUMER_KEY = "sbxck7q2m4x9r1t6w3e8y5u0i2o4p6a8"
CONSUMER_SECRET = "sbxcs3n5b7v9c1x3z5l7k9j1h3g5f7d9"
ACCESS_TOKEN = "sbxat8w6e4r2t0y8u6i4o2p0a8s6d4f2"
ACCESS_TOKEN_SECRET = "sbxts1q3w5e7r9t1y3u5i7o9p1a3s5d7"

# SaaS (Adobe Commerce as a Cloud Service): the IMS server-to-server client and the tenant
IMS_CLIENT_ID = "5c0a1f2e3d4b5a697887a6b5c4d3e2f1"
IMS_CLIENT_SECRET = "p8e-SBXcommerceACCSclientSecret00000001"
TENANT_ID = "SbxTenant7Qm2Lx9Rk4Wd8Vp3"
IMS_SCOPE = "commerce.accs"  # the scope a token request must contain
