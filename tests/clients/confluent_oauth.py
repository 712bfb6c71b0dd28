"""Produces two records with confluent-kafka over SASL OAUTHBEARER, with a JWT this script
signs (ES256) and hands librdkafka through `oauth_cb`; prints the offsets, or `refused: …`.

BOOTSTRAP TOPIC KEY_PEM KID ISSUER AUDIENCE SUBJECT LIFETIME_S
(a negative LIFETIME_S makes a token that expired that long ago)."""
import base64
import json
import sys
import time

from confluent_kafka import KafkaException, Producer
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

bootstrap, topic, key_pem, kid, issuer, audience, subject, lifetime = sys.argv[1:9]
key = serialization.load_pem_private_key(open(key_pem, "rb").read(), password=None)


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token():
    now = int(time.time())
    exp = now + int(lifetime)
    header = {"alg": "ES256", "typ": "JWT", "kid": kid}
    claims = {"iss": issuer, "aud": audience, "sub": subject, "iat": now, "exp": exp}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    signature = b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    # librdkafka refreshes before the expiry it is given; a past one only for the test.
    return f"{signing_input}.{signature}", max(exp, now + 60)


producer = Producer(
    {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": "OAUTHBEARER",
        "oauth_cb": lambda _config: token(),
        "message.timeout.ms": 5000,
        "socket.connection.setup.timeout.ms": 4000,
    }
)
offsets, failures = [], []


def delivered(err, msg):
    if err is not None:
        failures.append(str(err))
    else:
        offsets.append(msg.offset())


try:
    for i in range(2):
        producer.produce(topic, f"oauth {i}".encode(), on_delivery=delivered)
    producer.flush(10)
except KafkaException as e:
    failures.append(str(e))
if failures or len(offsets) != 2:
    print("refused:", (failures or ["no acknowledgement"])[0])
else:
    print(" ".join(map(str, sorted(offsets))))
