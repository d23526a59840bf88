# gluon-deeplab on the CPU: MXNet's CPU build from pip, with the README's install commands
# (README, Install). Not built by the tests (no Docker where they run): tests/test_docker.py
# checks that each RUN line is a command the README shows.
#   docker build -f docker/cpu.Dockerfile -t gluon-deeplab:cpu .
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 libgomp1
WORKDIR /workspace/gluon-deeplab
COPY . .
RUN pip install -e '.[cpu]'
CMD ["gluon-deeplab-env"]
