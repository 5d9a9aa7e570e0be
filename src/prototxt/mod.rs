//! Reading Caffe net definitions (prototxt) into the generated `caffe` types.
//!
//! [`read_net`] is the whole path that Caffe 1.0 takes from a model file to the
//! layers of one phase. The file is parsed as protobuf text
//! ([`parse_net_text`]), brought up to the current format ([`upgrade_net`]) and
//! filtered by the include/exclude rules of its layers ([`filter_net`]).

mod filter;
mod upgrade;
mod upgrade_v0;

use std::path::Path;
use std::sync::OnceLock;

use miette::Diagnostic;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};

use crate::caffe;
use crate::caffe::v1_layer_parameter::LayerType;
use crate::error::{Error, Result};

pub use filter::filter_net;
pub use upgrade::upgrade_net;

/// Parses the text of a `NetParameter` (a whole prototxt file) without
/// upgrading or filtering it.
///
/// `file` names the text in errors. Text that does not parse, such as an
/// unknown field, enum value or message type, is an [`Error::ModelText`]. Its
/// 1-based line and column count characters, so a tab is one column.
pub fn parse_net_text(text: &str, file: &str) -> Result<caffe::NetParameter> {
    parse_text(text, file, "caffe.NetParameter")
}

/// Parses the text of one `LayerParameter`, the body of a `layer { ... }`
/// block without the braces.
///
/// Errors are those of [`parse_net_text`].
pub fn parse_layer_text(text: &str, file: &str) -> Result<caffe::LayerParameter> {
    parse_text(text, file, "caffe.LayerParameter")
}

/// Reads the model file at `path` and returns the layers that run in `phase`.
///
/// The net is parsed, upgraded from the V0 and V1 formats and from deprecated
/// input fields, and filtered for `phase` at level 0 with no stages added to
/// those of the net's own `state`, as Caffe 1.0's `Net(param_file, phase)`
/// does. A file that is missing, is a directory or a device, or is not UTF-8
/// is an [`Error::File`]. The other errors are those of [`parse_net_text`],
/// [`upgrade_net`] and [`filter_net`].
pub fn read_net(path: &Path, phase: caffe::Phase) -> Result<caffe::NetParameter> {
    reject_device(path)?;
    let bytes = std::fs::read(path)
        .map_err(|error| Error::file(path, format!("failed to read model file: {error}")))?;
    let text = String::from_utf8(bytes).map_err(|error| {
        Error::file(
            path,
            format!(
                "model file is not valid UTF-8 (invalid byte at offset {})",
                error.utf8_error().valid_up_to()
            ),
        )
    })?;
    let file = path.display().to_string();
    let net = parse_net_text(&text, &file)?;
    let net = upgrade_net(net, &file)?;
    let state = caffe::NetState {
        phase: Some(phase as i32),
        level: Some(0),
        stage: Vec::new(),
    };
    filter_net(&net, &state, &file)
}

/// Rejects a model path that is a character or block device: reading
/// /dev/zero never ends. Pipes stay allowed, so `<(command)` works.
fn reject_device(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if let Ok(metadata) = std::fs::metadata(path) {
            let file_type = metadata.file_type();
            if file_type.is_char_device() || file_type.is_block_device() {
                return Err(Error::file(
                    path,
                    "failed to read model file: it is a device, not a prototxt file",
                ));
            }
        }
    }
    Ok(())
}

/// Parses `text` as the message `message_name` of caffe.proto and converts it
/// to the prost type `T`.
fn parse_text<T: prost::Message + Default>(
    text: &str,
    file: &str,
    message_name: &str,
) -> Result<T> {
    let descriptor = message_descriptor(file, message_name)?;
    let message = DynamicMessage::parse_text_format(descriptor, text)
        .map_err(|error| text_error(text, file, &error))?;
    message.transcode_to::<T>().map_err(|error| {
        Error::model(
            file,
            format!("failed to convert the parsed {message_name} to its generated type: {error}"),
        )
    })
}

/// Looks up `message_name` in the descriptor pool built from caffe.proto.
fn message_descriptor(file: &str, message_name: &str) -> Result<MessageDescriptor> {
    let pool = descriptor_pool().map_err(|message| Error::model(file, message.clone()))?;
    pool.get_message_by_name(message_name).ok_or_else(|| {
        Error::model(
            file,
            format!("message type {message_name} is missing from the built-in caffe.proto"),
        )
    })
}

/// Decodes the descriptor pool of caffe.proto on first use and returns it.
///
/// The descriptor set is produced by build.rs, so a decoding failure is a
/// build defect. It is still returned as an error rather than a panic.
fn descriptor_pool() -> std::result::Result<&'static DescriptorPool, &'static String> {
    static POOL: OnceLock<std::result::Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(crate::CAFFE_DESCRIPTOR_SET)
            .map_err(|error| format!("the built-in caffe.proto descriptor set is invalid: {error}"))
    })
    .as_ref()
}

/// Converts a text-format parse error into [`Error::ModelText`].
///
/// prost-reflect reports the byte span of the offending token through its
/// miette labels. An error without a span (unexpected end of input) is placed
/// at the end of the text.
fn text_error(text: &str, file: &str, error: &prost_reflect::text_format::ParseError) -> Error {
    let offset = error
        .labels()
        .and_then(|mut labels| labels.next())
        .map_or(text.len(), |label| label.offset());
    let (line, column) = line_and_column(text, offset);
    let mut message = error.to_string();
    if let Some(hint) = quoted_v1_type_hint(text, offset, &message) {
        message.push_str(&hint);
    }
    Error::ModelText {
        file: file.to_string(),
        line,
        column,
        message,
    }
}

/// Explains the error of a quoted type in a V1 `layers` block, such as
/// `type: "Softmax"`: there `type` is an enum, written without quotes.
///
/// Returns `None` unless `message` is about a missing enum value and the field
/// before `offset` is `type`. Of the caffe.proto fields named `type`, only the
/// V1 layer's is an enum.
fn quoted_v1_type_hint(text: &str, offset: usize, message: &str) -> Option<String> {
    if !message.starts_with("expected an enum value") {
        return None;
    }
    let before = text.get(..offset)?.trim_end();
    let before = before.strip_suffix(':').unwrap_or(before).trim_end();
    if !before.ends_with("type") {
        return None;
    }
    let quoted: String = text
        .get(offset..)?
        .chars()
        .skip(1)
        .take_while(|c| *c != '"' && *c != '\'')
        .collect();
    let enum_name = (0..=i32::from(u8::MAX))
        .filter_map(|value| LayerType::try_from(value).ok())
        .find(|layer_type| upgrade::v2_type_name(*layer_type).eq_ignore_ascii_case(&quoted))
        .map(|layer_type| layer_type.as_str_name());
    let example = match enum_name {
        Some(name) => format!("here {name}"),
        None => "such as SOFTMAX or SOFTMAX_LOSS".to_string(),
    };
    Some(format!(
        "; in a V1 'layers' block the type is an enum name without quotes ({example}), \
         or write the block as a V2 'layer' block, whose type is a quoted string"
    ))
}

/// Converts a byte offset in `text` into a 1-based line and column.
///
/// Lines end at `\n`. Columns count characters, so a tab or a multi-byte
/// character is one column. An offset past the end or inside a character is
/// moved back to the nearest character boundary.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::line_and_column;

    #[test]
    fn line_and_column_counts_characters() {
        assert_eq!(line_and_column("abc", 0), (1, 1));
        assert_eq!(line_and_column("a\nbc", 3), (2, 2));
        assert_eq!(line_and_column("a\n\tx", 3), (2, 2));
        assert_eq!(line_and_column("a\né x", 5), (2, 3));
        assert_eq!(line_and_column("ab", 99), (1, 3));
    }
}
