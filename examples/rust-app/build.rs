//! Links the static library `kiln build` wrote: `KILN_LIB_DIR` names the
//! directory holding `libmlp.a` (built with `--fn forward --params ...`).

fn main() {
    println!("cargo:rerun-if-env-changed=KILN_LIB_DIR");
    let Ok(dir) = std::env::var("KILN_LIB_DIR") else {
        panic!(
            "set KILN_LIB_DIR to the directory of libmlp.a, made by: kiln build examples/mlp.kiln --fn forward \
             --params mlp.safetensors --bind N=1000 -o DIR"
        );
    };
    println!("cargo:rerun-if-changed={dir}/libmlp.a");
    println!("cargo:rustc-link-search=native={dir}");
    println!("cargo:rustc-link-lib=static=mlp");
    println!("cargo:rustc-link-lib=m");
}
