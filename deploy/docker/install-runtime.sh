#!/bin/sh
# Installs a packed txoutbox tarball into an application directory with production dependencies
# only, as the image's runtime stage does (deploy/docker/Dockerfile) and as
# test/packaging/container-image.test.ts does to check it without a Docker engine.
#
#   install-runtime.sh <txoutbox.tgz> <app dir>
#
# The tarball is kept in <app dir>/vendor: package.json names it, so an image built FROM this one
# can still `npm install` its handlers' own dependencies in /app. NPM_INSTALL_FLAGS adds flags
# (the test passes --prefer-offline).
set -eu
tarball=$1
app=$2
mkdir -p "$app/vendor"
cp "$tarball" "$app/vendor/txoutbox.tgz"
cd "$app"
[ -f package.json ] || printf '{ "name": "txoutbox-runtime", "private": true }\n' >package.json
# shellcheck disable=SC2086 # NPM_INSTALL_FLAGS is a list of flags
npm install --omit=dev --no-audit --no-fund --loglevel=error ${NPM_INSTALL_FLAGS:-} ./vendor/txoutbox.tgz
