#!/bin/sh
# Builds the optional TensorFlow binding that pnpm leaves unbuilt (pnpm-workspace.yaml allowBuilds): downloads
# libtensorflow for tfjs-node (cpu) or tfjs-node-gpu (gpu) and compiles the N-API binding. Needs network, python3, g++.
set -eu
flavor="${1:-cpu}"
pkg="@tensorflow/tfjs-node"
[ "$flavor" = gpu ] && pkg="@tensorflow/tfjs-node-gpu"
dir=$(node -e "console.log(require('path').dirname(require.resolve('$pkg/package.json', { paths: ['packages/backend'] })))")
cd "$dir"
npm run install
