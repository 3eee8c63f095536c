//! Writes the terrain relief used to measure toolpaths on a fine mesh (see
//! `models::terrain_relief`): `cargo run --release -p millpond-core --example generate_relief
//! -- relief.stl [CELLS]` (374 cells: about 280k triangles).

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "relief.stl".to_string());
    let cells = args
        .next()
        .map_or(374, |c| c.parse().expect("CELLS: a number"));
    let tris = millpond_core::models::terrain_relief(cells);
    let file = std::io::BufWriter::new(std::fs::File::create(&path)?);
    millpond_core::stl::write_binary(file, "Millpond terrain relief (generated)", &tris)?;
    println!("{path}: {} triangles", tris.len());
    Ok(())
}
