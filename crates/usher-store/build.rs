//! `sqlx::migrate!` embeds the migration files at compile time, but on stable Rust it
//! cannot tell cargo to watch them: without this, a new migration is left out of the
//! binary until something else in the crate changes (what `sqlx migrate build-script`
//! writes).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
