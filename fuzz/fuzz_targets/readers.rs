//! Fuzzes the file readers (NPY, safetensors checkpoints, IDX raw and
//! gzip): no input may panic or abort; every file is a value or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("kiln-fuzz-readers-{}", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let module = kiln_ir::parse_module(
        "param w: f32[3, 2] = zeros\nfunc f(x: f32[3]) -> (f32[3]) {\n  %0: f32[3] = input 0\n  return %0\n}\n",
    )
    .expect("a valid module");
    let _ = kiln_runtime::npy::read(&path);
    let _ = kiln_runtime::checkpoint::load(&path, &module, |_| true);
    let _ = kiln_runtime::checkpoint::train_state(&path);
    let _ = kiln_runtime::idx::read_images(&path);
    let _ = kiln_runtime::idx::read_labels(&path);
});
