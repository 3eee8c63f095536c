//! The bundled assets are what the project's generators make, byte for byte.

use millpond_core::{Mesh, models, stl};

#[test]
fn default_model_matches_its_generator() {
    let committed = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../assets/default-part.stl"
    ))
    .expect("assets/default-part.stl is committed");
    let mut generated = Vec::new();
    stl::write_binary(
        &mut generated,
        "Millpond default part (generated)",
        &models::default_part(),
    )
    .unwrap();
    assert!(
        committed == generated,
        "assets/default-part.stl differs from models::default_part(); regenerate it with \
         `cargo run --release -p millpond-core --example generate_default_model`"
    );
    let mesh = Mesh::from_stl_bytes(&committed, "default-part.stl").unwrap();
    assert_eq!(mesh.skipped_degenerate(), 0);
    let b = mesh.bounds();
    assert_eq!(
        (b.min.x, b.max.x, b.min.y, b.max.y, b.min.z),
        (0.0, 80.0, 0.0, 60.0, 0.0)
    );
}
