//! Wording rules that every view and the CLI share.

/// A count with its noun: "1 photo", "3 photos", "1 class", "2 classes".
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `text` as a sentence of its own: a capital first letter.
pub fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// "1 photo", "3 photos".
pub fn photos(n: usize) -> String {
    count(n, "photo", "photos")
}

/// "1 epoch", "3 epochs".
pub fn epochs(n: usize) -> String {
    count(n, "epoch", "epochs")
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_is_singular() {
        assert_eq!(super::photos(1), "1 photo");
        assert_eq!(super::photos(0), "0 photos");
        assert_eq!(super::count(2, "class", "classes"), "2 classes");
        assert_eq!(super::epochs(1), "1 epoch");
        assert_eq!(super::sentence("made with Keras"), "Made with Keras");
    }
}
