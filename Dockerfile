# The Tessera image: every service (pgserver, gateway, confmaster, confmaster-cli) in one.
FROM python:3.11-slim
WORKDIR /opt/tessera
COPY pyproject.toml README.md ./
COPY tessera ./tessera
COPY pgserver ./pgserver
COPY gateway ./gateway
COPY confmaster ./confmaster
COPY migrator ./migrator
RUN pip install --no-cache-dir . && useradd --create-home tessera && mkdir /data && chown tessera /data
USER tessera
VOLUME /data
CMD ["confmaster", "--help"]
