//! Writes the bundled default model: `cargo run --release -p millpond-core --example
//! generate_default_model -- assets/default-part.stl`. A test checks the committed file
//! still matches this generator.

fn main() -> std::io::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "assets/default-part.stl".to_string());
    let tris = millpond_core::models::default_part();
    let file = std::io::BufWriter::new(std::fs::File::create(&path)?);
    millpond_core::stl::write_binary(file, "Millpond default part (generated)", &tris)?;
    println!("{path}: {} triangles", tris.len());
    Ok(())
}
