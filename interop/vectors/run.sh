#!/bin/sh
# Regenerates vectors.json from Test.ice with ZeroC's Ice 3.7 Java runtime.
# Needs: apt-get install -y libzeroc-ice3.7-java zeroc-ice-compilers zeroc-ice-slice, a JDK.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
jar=${ICE_JAR:-/usr/share/java/ice-3.7.8.jar}:${ICESSL_JAR:-/usr/share/java/icessl-3.7.8.jar}
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
mkdir -p "$build/src" "$build/classes"
slice2java --output-dir "$build/src" "$here/Test.ice"
javac -nowarn -cp "$jar" -d "$build/classes" $(find "$build/src" -name '*.java') "$here/Gen.java"
java -cp "$jar:$build/classes" Gen --Ice.Plugin.IceSSL=com.zeroc.IceSSL.PluginFactory > "$here/vectors.json.tmp"
mv "$here/vectors.json.tmp" "$here/vectors.json"
echo "wrote $here/vectors.json"
