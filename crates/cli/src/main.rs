mod pipeline;
mod summary;

fn main() {
    println!("eraser");
}
