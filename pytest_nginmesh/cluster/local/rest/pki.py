"""The embedded API server's credentials: a CA, a serving certificate, an admin token and a kubeconfig."""

from __future__ import annotations

import base64
import datetime
import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..system import write_private

VALIDITY = datetime.timedelta(days=365)
# The names a pod or a client may use for the API server, as kubeadm puts them in apiserver.crt.
SERVICE_NAMES = ("kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
                 "localhost")


def issue(ca_common_name: str, common_name: str, names: list[x509.GeneralName]) -> tuple[bytes, bytes, bytes]:
    """A fresh CA and a serving certificate it signs for ``names``: the PEMs of the CA's certificate, the
    serving certificate and its key."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_common_name)])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False),
                       critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    return (ca_cert.public_bytes(serialization.Encoding.PEM), cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


@dataclass(frozen=True)
class Credentials:
    """Where a cluster's CA, serving certificate and key, and admin token live (all 0600)."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def server_cert(self) -> Path:
        return self.directory / "apiserver.crt"

    @property
    def server_key(self) -> Path:
        return self.directory / "apiserver.key"

    @property
    def token_file(self) -> Path:
        return self.directory / "admin.token"

    def create(self, cluster: str, addresses: list[str]) -> Credentials:
        """A fresh CA and a serving certificate for ``addresses`` and the in-cluster names, and a token."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in SERVICE_NAMES]
        names += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
        ca_pem, cert_pem, key_pem = issue(f"nginmesh-local-ca-{cluster}", "kube-apiserver", names)
        write_private(self.ca_cert, ca_pem)
        write_private(self.server_cert, cert_pem)
        write_private(self.server_key, key_pem)
        write_private(self.token_file, secrets.token_urlsafe(32).encode())
        return self

    def token(self) -> str:
        return self.token_file.read_text().strip()

    def accepts(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header carries the admin token."""
        scheme, _, presented = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), self.token().encode())

    def kubeconfig(self, cluster: str, server: str) -> str:
        """A kubeconfig for the admin, as ``kind get kubeconfig`` prints one: context ``nginmesh-<cluster>``."""
        name = f"nginmesh-{cluster}"
        ca = base64.b64encode(self.ca_cert.read_bytes()).decode()
        config = {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": ca}}],
            "users": [{"name": name, "user": {"token": self.token()}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "current-context": name,
        }
        return yaml.safe_dump(config, sort_keys=False)
