"""Certificates and keys for a throwaway local control plane (pure builders plus one writer).

A CA, the kube-apiserver's serving certificate (valid for 127.0.0.1 and the in-cluster names), an
admin client certificate in group system:masters, and the service-account signing key pair. Made
with the `cryptography` package, valid for a week: nothing here outlives a test session.
"""
from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=7)
SERVICE_IP = "10.0.0.1"  # first address of the apiserver's --service-cluster-ip-range
API_SERVER_NAMES = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                    "kubernetes.default.svc.cluster.local"]


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _builder(subject: x509.Name, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALIDITY))


@dataclass
class Pki:
    """PEM bytes of everything the control plane needs."""

    ca_cert: bytes
    ca_key: bytes
    server_cert: bytes
    server_key: bytes
    admin_cert: bytes
    admin_key: bytes
    sa_private_key: bytes
    sa_public_key: bytes


def build_pki(extra_ips: list[str] = ()) -> Pki:
    """Everything for one cluster; `extra_ips` are more addresses the API server is reached at."""
    ca_key = _key()
    ca_name = _name("cachedmodel-test-ca")
    ca = (_builder(ca_name, ca_name, ca_key.public_key())
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))

    def leaf(subject: x509.Name, usage, sans: x509.SubjectAlternativeName | None):
        key = _key()
        builder = (_builder(subject, ca_name, key.public_key())
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if sans is not None:
            builder = builder.add_extension(sans, critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    sans = x509.SubjectAlternativeName(
        [x509.DNSName(n) for n in API_SERVER_NAMES]
        + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in dict.fromkeys(("127.0.0.1", SERVICE_IP, *extra_ips))])
    server, server_key = leaf(_name("kube-apiserver"), ExtendedKeyUsageOID.SERVER_AUTH, sans)
    admin, admin_key = leaf(_name("cachedmodel-admin", "system:masters"), ExtendedKeyUsageOID.CLIENT_AUTH, None)
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return Pki(
        ca_cert=_pem_cert(ca), ca_key=_pem_key(ca_key),
        server_cert=_pem_cert(server), server_key=_pem_key(server_key),
        admin_cert=_pem_cert(admin), admin_key=_pem_key(admin_key),
        sa_private_key=sa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                            serialization.NoEncryption()),
        sa_public_key=sa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo),
    )


def write_pki(pki: Pki, directory: Path) -> dict[str, Path]:
    """Write every PEM as <name>.pem (keys mode 0600); return name -> path."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, data in vars(pki).items():
        path = directory / f"{name}.pem"
        path.write_bytes(data)
        if "key" in name:
            path.chmod(0o600)
        paths[name] = path
    return paths
