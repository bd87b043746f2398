//! Compose files as `apply` and `diff` send them: the YAML read with the line of every node
//! (so an error, the server's too, names `compose.yaml:14`), variables interpolated as Compose
//! does (`${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?message}`, `$$`) from the
//! environment and the `.env` file beside the file (the environment wins), `env_file`s read
//! into `environment`, and the result as the JSON `PUT /v1/stacks/{name}` takes. What the
//! subset allows is the server's to say: one list of rules, whoever sends the file.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use marked_yaml::{LoaderOptions, Node};
use serde_json::{Map, Number, Value};

/// A Compose file read and interpolated, with where each of its paths is.
pub struct ComposeFile {
    pub file: PathBuf,
    /// The JSON to send.
    pub body: Value,
    /// `services.web.ports[1]` -> its line.
    lines: HashMap<String, usize>,
}

impl ComposeFile {
    /// `file:LINE: PATH: message` for a path in the file (the nearest line an ancestor has).
    pub fn at(&self, path: &str, message: &str) -> String {
        let mut probe = path;
        loop {
            if let Some(line) = self.lines.get(probe) {
                return format!("{}:{line}: {path}: {message}", self.file.display());
            }
            match probe.rfind(['.', '[']) {
                Some(i) => probe = &probe[..i],
                None => return format!("{}: {path}: {message}", self.file.display()),
            }
        }
    }

    /// The stack's name: `--stack`, else the file's `name`, else its directory's (as Compose
    /// names a project), lowercased, with anything outside a DNS label made '-'.
    pub fn stack_name(&self, given: Option<&str>) -> String {
        if let Some(name) = given {
            return name.to_string();
        }
        if let Some(name) = self.body["name"].as_str() {
            return name.to_string();
        }
        let dir = std::fs::canonicalize(&self.file)
            .ok()
            .and_then(|f| f.parent().and_then(|d| d.file_name()).map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        let name: String =
            dir.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
        name.trim_matches('-').to_string()
    }
}

/// Reads `file` with the variables of `environment` (the process's, usually) over those of the
/// `.env` file beside it.
pub fn load(file: &Path, environment: &BTreeMap<String, String>) -> Result<ComposeFile> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut vars = dot_env(&dir.join(".env"))?;
    vars.extend(environment.iter().map(|(k, v)| (k.clone(), v.clone())));
    let shown = file.display().to_string();
    let options = LoaderOptions::default().error_on_duplicate_keys(true);
    let root = marked_yaml::parse_yaml_with_options(0, &text, options).map_err(|e| {
        let line = load_error_line(&e);
        anyhow!("{shown}:{line}: not YAML this reads: {e}")
    })?;
    let mut reader = Reader { vars: &vars, lines: HashMap::new(), file: &shown };
    let mut body = reader.value(&root, "")?;
    let lines = reader.lines;
    let compose = ComposeFile { file: file.to_path_buf(), body: Value::Null, lines };
    read_env_files(&mut body, &dir, &vars, &compose)?;
    Ok(ComposeFile { body, ..compose })
}

fn load_error_line(e: &marked_yaml::LoadError) -> usize {
    use marked_yaml::LoadError::*;
    match e {
        TopLevelMustBeMapping(m)
        | TopLevelMustBeSequence(m)
        | UnexpectedAnchor(m)
        | MappingKeyMustBeScalar(m)
        | UnexpectedTag(m)
        | ScanError(m, _) => m.line(),
        DuplicateKey(inner) => inner.key.span().start().map_or(0, |m| m.line()),
    }
}

/// The variables of a `.env` file, if there is one.
fn dot_env(path: &Path) -> Result<BTreeMap<String, String>> {
    if !path.exists() {
        return Ok(BTreeMap::new());
    }
    dotenvy::from_path_iter(path)
        .and_then(|vars| vars.collect::<Result<BTreeMap<_, _>, _>>())
        .with_context(|| format!("cannot read {}", path.display()))
}

struct Reader<'a> {
    vars: &'a BTreeMap<String, String>,
    lines: HashMap<String, usize>,
    file: &'a str,
}

impl Reader<'_> {
    fn value(&mut self, node: &Node, path: &str) -> Result<Value> {
        let line = node.span().start().map_or(0, |m| m.line());
        self.lines.entry(path.to_string()).or_insert(line);
        match node {
            Node::Scalar(s) => {
                let text =
                    interpolate(s.as_str(), self.vars).map_err(|why| anyhow!("{}:{line}: {path}: {why}", self.file))?;
                Ok(if s.may_coerce() { coerce(&text) } else { Value::String(text) })
            }
            Node::Sequence(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| self.value(item, &format!("{path}[{i}]")))
                .collect::<Result<Vec<_>>>()
                .map(Value::Array),
            Node::Mapping(map) => {
                let mut out = Map::new();
                for (key, value) in map.iter() {
                    let child =
                        if path.is_empty() { key.as_str().to_string() } else { format!("{path}.{}", key.as_str()) };
                    let key_line = key.span().start().map_or(line, |m| m.line());
                    self.lines.insert(child.clone(), key_line);
                    let v = self.value(value, &child)?;
                    // The key's line, not its value's (a mapping value starts a line below).
                    self.lines.insert(child.clone(), key_line);
                    out.insert(key.as_str().to_string(), v);
                }
                Ok(Value::Object(out))
            }
        }
    }
}

/// A plain scalar as YAML 1.2's core schema reads it: null, a boolean, a number, or a string.
fn coerce(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(i) = text.parse::<i64>() {
        return Value::Number(i.into());
    }
    if text.bytes().any(|b| b.is_ascii_digit())
        && let Ok(f) = text.parse::<f64>()
        && let Some(n) = Number::from_f64(f)
    {
        return Value::Number(n);
    }
    Value::String(text.to_string())
}

/// Compose's interpolation of one value.
pub fn interpolate(text: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{') {
            let end = closing_brace(inner).ok_or_else(|| format!("{text:?}: a '${{' without its '}}'"))?;
            out.push_str(&expand(&inner[..end], vars)?);
            rest = &inner[end + 1..];
        } else {
            let len = after.bytes().take_while(|b| b.is_ascii_alphanumeric() || *b == b'_').count();
            let name = &after[..len];
            if name.is_empty() || name.as_bytes()[0].is_ascii_digit() {
                return Err(format!("{text:?}: a '$' that starts no variable (write '$$' for a '$')"));
            }
            out.push_str(vars.get(name).map_or("", String::as_str));
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Where the `}` closing a `${` is, `${`s inside a default counted.
fn closing_brace(inner: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return Some(i),
            '}' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// `NAME`, `NAME:-default`, `NAME-default`, `NAME:?message`, `NAME?message`, `NAME:+alt`,
/// `NAME+alt`: the `:` forms treat an empty value as unset.
fn expand(spec: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let len = spec.bytes().take_while(|b| b.is_ascii_alphanumeric() || *b == b'_').count();
    let (name, op) = spec.split_at(len);
    if name.is_empty() || name.as_bytes()[0].is_ascii_digit() {
        return Err(format!("\"${{{spec}}}\": not a variable name"));
    }
    let value = vars.get(name);
    let (empty_is_unset, op) = match op.strip_prefix(':') {
        Some(op) => (true, op),
        None => (false, op),
    };
    let set = value.is_some_and(|v| !(empty_is_unset && v.is_empty()));
    let Some(kind) = op.chars().next() else {
        return Ok(value.cloned().unwrap_or_default());
    };
    let arg = &op[kind.len_utf8()..];
    match kind {
        '-' if set => Ok(value.cloned().unwrap_or_default()),
        '-' => interpolate(arg, vars),
        '?' if set => Ok(value.cloned().unwrap_or_default()),
        '?' => Err(if arg.is_empty() { format!("{name} is required") } else { format!("{name}: {arg}") }),
        '+' if set => interpolate(arg, vars),
        '+' => Ok(String::new()),
        _ => Err(format!("\"${{{spec}}}\": not a form Compose knows")),
    }
}

/// Each service's `env_file`s read (relative to the file) into its `environment`, which wins;
/// a bare `KEY` in `environment` takes its value from the variables, as Compose does.
fn read_env_files(body: &mut Value, dir: &Path, vars: &BTreeMap<String, String>, at: &ComposeFile) -> Result<()> {
    let Some(services) = body.get_mut("services").and_then(Value::as_object_mut) else { return Ok(()) };
    for (name, service) in services.iter_mut() {
        let Some(service) = service.as_object_mut() else { continue };
        let path = format!("services.{name}");
        let mut env = BTreeMap::new();
        if let Some(files) = service.remove("env_file") {
            let files: Vec<Value> = match files {
                Value::Array(list) => list,
                one => vec![one],
            };
            for (i, f) in files.iter().enumerate() {
                let (file, required) = match f {
                    Value::String(p) => (p.clone(), true),
                    Value::Object(o) => (
                        o.get("path").and_then(Value::as_str).unwrap_or_default().to_string(),
                        o.get("required").and_then(Value::as_bool).unwrap_or(true),
                    ),
                    _ => bail!(at.at(&format!("{path}.env_file[{i}]"), "must be a path")),
                };
                let full = dir.join(&file);
                if !full.exists() && !required {
                    continue;
                }
                let read = dotenvy::from_path_iter(&full)
                    .and_then(|vars| vars.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| anyhow!(at.at(&format!("{path}.env_file"), &format!("cannot read {file}: {e}"))))?;
                env.extend(read);
            }
        }
        match service.get("environment") {
            Some(Value::Object(map)) => {
                for (k, v) in map {
                    match v {
                        Value::Null => {
                            if let Some(value) = vars.get(k) {
                                env.insert(k.clone(), value.clone());
                            }
                        }
                        Value::String(s) => {
                            env.insert(k.clone(), s.clone());
                        }
                        other => {
                            env.insert(k.clone(), other.to_string());
                        }
                    }
                }
            }
            Some(Value::Array(items)) => {
                for item in items {
                    let text = match item {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    match text.split_once('=') {
                        Some((k, v)) => {
                            env.insert(k.to_string(), v.to_string());
                        }
                        None => {
                            if let Some(value) = vars.get(&text) {
                                env.insert(text, value.clone());
                            }
                        }
                    }
                }
            }
            // Not a list or mapping: the server says so, naming it.
            Some(_) => continue,
            None if env.is_empty() => continue,
            None => {}
        }
        service.insert("environment".into(), serde_json::to_value(env)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn variables_are_interpolated_as_compose_does() {
        let v = vars(&[("TAG", "2"), ("EMPTY", "")]);
        for (text, want) in [
            ("app:${TAG}", "app:2"),
            ("app:$TAG", "app:2"),
            ("${MISSING:-1}", "1"),
            ("${EMPTY:-1}", "1"),
            ("${EMPTY-1}", ""),
            ("${MISSING-1}", "1"),
            ("${TAG:+set}", "set"),
            ("${MISSING:+set}", ""),
            ("cost $$5", "cost $5"),
            ("${MISSING:-${TAG}}", "2"),
            ("${MISSING}", ""),
            ("plain", "plain"),
        ] {
            assert_eq!(interpolate(text, &v).unwrap(), want, "{text}");
        }
        assert_eq!(interpolate("${MISSING:?set MISSING}", &v).unwrap_err(), "MISSING: set MISSING");
        assert_eq!(interpolate("${EMPTY:?}", &v).unwrap_err(), "EMPTY is required");
        assert_eq!(interpolate("${EMPTY?}", &v).unwrap(), "", "only unset fails without ':'");
        assert!(interpolate("${TAG", &v).is_err());
        assert!(interpolate("$5", &v).is_err());
        assert!(interpolate("${TAG/x}", &v).is_err());
    }

    #[test]
    fn a_file_reads_with_its_lines_its_env_and_env_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".env"), "TAG=1\nFROM_DOT=dot\n").unwrap();
        std::fs::write(dir.path().join("web.env"), "A=from-file\nB=from-file\n").unwrap();
        let file = dir.path().join("compose.yaml");
        std::fs::write(
            &file,
            "name: shop\nservices:\n  web:\n    image: local/busybox:${TAG}\n    env_file: web.env\n    environment:\n      B: \"from-environment\"\n      FROM_DOT:\n      PORT: 8080\n    ports:\n      - \"18081:8080\"\n      - 9090\n    deploy:\n      replicas: 2\n",
        )
        .unwrap();
        let c = load(&file, &vars(&[("TAG", "7")])).unwrap();
        assert_eq!(c.body["services"]["web"]["image"], "local/busybox:7", "the environment over .env");
        let env = &c.body["services"]["web"]["environment"];
        assert_eq!(
            env,
            &serde_json::json!({"A": "from-file", "B": "from-environment", "FROM_DOT": "dot", "PORT": "8080"})
        );
        assert!(c.body["services"]["web"].get("env_file").is_none());
        assert_eq!(c.body["services"]["web"]["ports"], serde_json::json!(["18081:8080", 9090]));
        assert_eq!(c.body["services"]["web"]["deploy"]["replicas"], 2);
        let shown = file.display();
        assert_eq!(c.at("services.web.ports[1]", "bad"), format!("{shown}:12: services.web.ports[1]: bad"));
        assert_eq!(c.at("services.web.deploy", "x"), format!("{shown}:13: services.web.deploy: x"));
        assert_eq!(c.at("services.web.networks", "no"), format!("{shown}:3: services.web.networks: no"));
        assert_eq!(c.stack_name(None), "shop");
        assert_eq!(c.stack_name(Some("other")), "other");

        std::fs::write(&file, "services:\n  web:\n    image: ${IMAGE:?give an image}\n").unwrap();
        let err = load(&file, &BTreeMap::new()).err().unwrap().to_string();
        assert_eq!(err, format!("{shown}:3: services.web.image: IMAGE: give an image"));
        std::fs::write(&file, "services:\n  web:\n    image: a\n  web:\n    image: b\n").unwrap();
        let err = load(&file, &BTreeMap::new()).err().unwrap().to_string();
        assert!(err.starts_with(&format!("{shown}:4: ")), "{err}");
    }
}
