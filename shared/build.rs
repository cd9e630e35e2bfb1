//! Compiles the client protocol's Protobuf schema (`proto/client.proto`) into Rust with
//! prost. The schema is parsed by protox, a protobuf compiler written in Rust, so a
//! build needs no `protoc` on the machine.

fn main() {
    println!("cargo:rerun-if-changed=proto/client.proto");
    let files = match protox::compile(["client.proto"], ["proto"]) {
        Ok(files) => files,
        Err(e) => panic!("proto/client.proto does not compile: {e}"),
    };
    if let Err(e) = prost_build::Config::new().compile_fds(files) {
        panic!("generating Rust from proto/client.proto failed: {e}");
    }
}
