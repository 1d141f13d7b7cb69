//! Print every dbward CRD as one YAML stream: `cargo run -p dbward-operator --bin crdgen | kubectl apply -f -`.
fn main() -> anyhow::Result<()> {
    print!("{}", dbward_crds::crdgen::render_all()?);
    Ok(())
}
