//! Spoken system prompts in English and French, generated once with `espeak-ng`, replaceable per
//! tenant.
//!
//! - [`CATALOGUE`]: every prompt id with its text in each [`Lang`]: digits and numbers, DTMF
//!   keys, and the phrases of an IVR, voicemail, queue and conference.
//! - [`say_count`] and [`say_number`]: the ids that speak a sentence like "you have 21 new
//!   messages", with French agreement ("vingt et un nouveaux messages", "un nouveau message",
//!   "vous n'avez aucun nouveau message", "vingt et une minutes").
//! - [`PromptLibrary`]: files under one directory. System prompts live at
//!   `<dir>/<lang>/<id>.wav`; [`PromptLibrary::ensure`] generates the missing ones at first
//!   start. A tenant replaces a prompt by putting a file at
//!   `<dir>/tenants/<tenant>/<lang>/<id>.wav`, which [`PromptLibrary::lookup`] prefers.
//!
//! `espeak-ng` (GPL) is only ever run as a separate program: `espeak-ng -v <lang> -s <speed>
//! -w <file> <text>`, which writes a 22 050 Hz mono WAV that [`crate::wav`] converts on loading.
//! Nothing here is needed at run time once the files exist.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use crate::wav::{WavError, load_wav};

/// A language prompts exist in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lang {
    /// English.
    En,
    /// French.
    Fr,
}

impl Lang {
    /// Every language, in catalogue order.
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Fr];

    /// The ISO 639-1 code: the directory name and the `espeak-ng` voice.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Fr => "fr",
        }
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A language tag that names no language with prompts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownLang(pub String);

impl fmt::Display for UnknownLang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no prompts in language {:?} (en and fr exist)", self.0)
    }
}

impl std::error::Error for UnknownLang {}

impl FromStr for Lang {
    type Err = UnknownLang;

    /// `en`, `fr`, or a tag starting with one of them (`en-GB`, `fr_CA`), any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let primary = s.split(['-', '_']).next().unwrap_or_default();
        Lang::ALL.into_iter().find(|l| primary.eq_ignore_ascii_case(l.code())).ok_or_else(|| UnknownLang(s.to_owned()))
    }
}

/// One prompt: its id (the file name without `.wav`) and its text in each language.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prompt {
    /// Id, also the file name.
    pub id: &'static str,
    /// English text.
    pub en: &'static str,
    /// French text.
    pub fr: &'static str,
}

impl Prompt {
    /// The text in `lang`.
    pub fn text(&self, lang: Lang) -> &'static str {
        match lang {
            Lang::En => self.en,
            Lang::Fr => self.fr,
        }
    }
}

const fn p(id: &'static str, en: &'static str, fr: &'static str) -> Prompt {
    Prompt { id, en, fr }
}

/// Every system prompt. Ids are shared by the languages; a few exist for one language's grammar
/// and carry the nearest text in the other (`and`: French "vingt et un"; `1-feminine`: "une";
/// `you-have-none`: French "vous n'avez", completed by `no`/`no-feminine`: "aucun"/"aucune").
pub const CATALOGUE: &[Prompt] = &[
    // Digits and numbers.
    p("0", "zero", "zéro"),
    p("1", "one", "un"),
    p("2", "two", "deux"),
    p("3", "three", "trois"),
    p("4", "four", "quatre"),
    p("5", "five", "cinq"),
    p("6", "six", "six"),
    p("7", "seven", "sept"),
    p("8", "eight", "huit"),
    p("9", "nine", "neuf"),
    p("10", "ten", "dix"),
    p("11", "eleven", "onze"),
    p("12", "twelve", "douze"),
    p("13", "thirteen", "treize"),
    p("14", "fourteen", "quatorze"),
    p("15", "fifteen", "quinze"),
    p("16", "sixteen", "seize"),
    p("17", "seventeen", "dix-sept"),
    p("18", "eighteen", "dix-huit"),
    p("19", "nineteen", "dix-neuf"),
    p("20", "twenty", "vingt"),
    p("30", "thirty", "trente"),
    p("40", "forty", "quarante"),
    p("50", "fifty", "cinquante"),
    p("60", "sixty", "soixante"),
    p("70", "seventy", "soixante-dix"),
    p("80", "eighty", "quatre-vingts"),
    p("90", "ninety", "quatre-vingt-dix"),
    p("hundred", "hundred", "cent"),
    p("thousand", "thousand", "mille"),
    p("and", "and", "et"),
    p("1-feminine", "one", "une"),
    // Keys.
    p("star", "star", "étoile"),
    p("pound", "pound", "dièse"),
    // Building blocks of menus and counts.
    p("press", "press", "appuyez sur"),
    p("for", "for", "pour"),
    p("to", "to", "pour"),
    p("or", "or", "ou"),
    p("you-have", "you have", "vous avez"),
    p("you-have-none", "you have", "vous n'avez"),
    p("no", "no", "aucun"),
    p("no-feminine", "no", "aucune"),
    p("message", "message", "message"),
    p("messages", "messages", "messages"),
    p("new-message", "new message", "nouveau message"),
    p("new-messages", "new messages", "nouveaux messages"),
    p("no-new-messages", "no new messages", "aucun nouveau message"),
    p("saved-message", "saved message", "message sauvegardé"),
    p("saved-messages", "saved messages", "messages sauvegardés"),
    p("minute", "minute", "minute"),
    p("minutes", "minutes", "minutes"),
    // Calls.
    p("welcome", "welcome", "bienvenue"),
    p("please-hold", "please hold", "veuillez patienter"),
    p("thank-you", "thank you", "merci"),
    p("goodbye", "goodbye", "au revoir"),
    p("not-available", "the person you are calling is not available", "votre correspondant n'est pas disponible"),
    p("busy", "the person you are calling is busy", "votre correspondant est déjà en ligne"),
    p(
        "not-in-service",
        "the number you have dialed is not in service",
        "le numéro que vous avez composé n'est pas attribué",
    ),
    p("try-later", "please try again later", "veuillez rappeler ultérieurement"),
    p("transferring", "please hold while we transfer your call", "veuillez patienter, nous transférons votre appel"),
    p("call-recorded", "this call may be recorded", "cet appel est susceptible d'être enregistré"),
    // Menus.
    p("main-menu", "main menu", "menu principal"),
    p("return-main-menu", "to return to the main menu", "pour revenir au menu principal"),
    p("invalid-option", "invalid option, please try again", "choix non valide, veuillez réessayer"),
    p("enter-extension", "please enter the extension number", "veuillez composer le numéro de poste"),
    p("followed-by-pound", "followed by the pound key", "suivi de la touche dièse"),
    p("office-closed", "our offices are currently closed", "nos bureaux sont actuellement fermés"),
    // Voicemail.
    p("enter-mailbox", "please enter your mailbox number", "veuillez saisir votre numéro de messagerie"),
    p("enter-pin", "please enter your pin", "veuillez saisir votre code secret"),
    p("invalid-pin", "incorrect pin", "code secret incorrect"),
    p("leave-message", "please leave a message after the tone", "veuillez laisser un message après le bip sonore"),
    p("mailbox-full", "the mailbox is full", "la messagerie est pleine"),
    p("first-message", "first message", "premier message"),
    p("next-message", "next message", "message suivant"),
    p("no-more-messages", "there are no more messages", "il n'y a plus de message"),
    p("to-listen", "to listen to your messages", "pour écouter vos messages"),
    p("to-replay", "to listen to this message again", "pour réécouter ce message"),
    p("to-delete", "to delete this message", "pour supprimer ce message"),
    p("to-save", "to save this message", "pour sauvegarder ce message"),
    p("to-record-again", "to record your message again", "pour réenregistrer votre message"),
    p("message-deleted", "message deleted", "message supprimé"),
    p("message-saved", "message saved", "message sauvegardé"),
    // Queues.
    p("call-important", "your call is important to us", "votre appel est important pour nous"),
    p("caller-number", "you are caller number", "votre position dans la file d'attente est"),
    p("all-agents-busy", "all our agents are currently busy", "tous nos conseillers sont actuellement en ligne"),
    p("estimated-wait", "your estimated waiting time is", "votre temps d'attente estimé est de"),
    // Conferences.
    p("enter-conference", "please enter the conference number", "veuillez saisir le numéro de la conférence"),
    p("conference-starting", "the conference is starting", "la conférence commence"),
    p("conference-locked", "this conference is locked", "cette conférence est verrouillée"),
    p("only-person", "you are the only person in this conference", "vous êtes la seule personne dans cette conférence"),
    p("joined-conference", "has joined the conference", "a rejoint la conférence"),
    p("left-conference", "has left the conference", "a quitté la conférence"),
    p("now-muted", "you are now muted", "votre micro est maintenant coupé"),
    p("now-unmuted", "you are now unmuted", "votre micro est maintenant réactivé"),
];

/// The catalogue entry of `id`.
pub fn prompt(id: &str) -> Option<&'static Prompt> {
    CATALOGUE.iter().find(|p| p.id == id)
}

/// The text a sequence of prompt ids says in `lang`, words separated by spaces (ids outside the
/// catalogue are left out): for logs, and for checking sequences.
pub fn spoken_text(lang: Lang, ids: &[&str]) -> String {
    let words: Vec<&str> = ids.iter().filter_map(|id| prompt(id)).map(|p| p.text(lang)).collect();
    words.join(" ")
}

/// Grammatical gender of what is counted (French agreement of "un/une", "aucun/aucune").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Gender {
    /// Masculine: "un message".
    Masculine,
    /// Feminine: "une minute".
    Feminine,
}

/// Things [`say_count`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Noun {
    /// "new message(s)", "nouveau(x) message(s)".
    NewMessage,
    /// "saved message(s)", "message(s) sauvegardé(s)".
    SavedMessage,
    /// "message(s)".
    Message,
    /// "minute(s)" (feminine in French).
    Minute,
}

impl Noun {
    /// Gender in French.
    pub fn gender(self) -> Gender {
        match self {
            Noun::Minute => Gender::Feminine,
            _ => Gender::Masculine,
        }
    }

    /// Prompt ids of the singular and the plural.
    fn forms(self) -> (&'static str, &'static str) {
        match self {
            Noun::NewMessage => ("new-message", "new-messages"),
            Noun::SavedMessage => ("saved-message", "saved-messages"),
            Noun::Message => ("message", "messages"),
            Noun::Minute => ("minute", "minutes"),
        }
    }
}

/// The prompt ids saying "you have `n` `noun`" in `lang`: "you have no new messages", "you have
/// one new message", "vous n'avez aucun nouveau message", "vous avez vingt et un nouveaux
/// messages", "vous avez une minute".
pub fn say_count(lang: Lang, n: u32, noun: Noun) -> Vec<&'static str> {
    let (singular, plural) = noun.forms();
    let mut ids = Vec::new();
    match (lang, n) {
        (Lang::En, 0) if noun == Noun::NewMessage => ids.extend(["you-have", "no-new-messages"]),
        (Lang::En, 0) => ids.extend(["you-have", "no", plural]),
        (Lang::Fr, 0) if noun == Noun::NewMessage => ids.extend(["you-have-none", "no-new-messages"]),
        (Lang::Fr, 0) => {
            let no = if noun.gender() == Gender::Feminine { "no-feminine" } else { "no" };
            ids.extend(["you-have-none", no, singular]);
        }
        _ => {
            ids.push("you-have");
            ids.extend(say_number(lang, n, noun.gender()));
            // French: 0 and 1 take the singular (and 0 is "aucun" above); English: only 1.
            ids.push(if n == 1 { singular } else { plural });
        }
    }
    ids
}

/// The prompt ids saying the number `n` in `lang`, agreeing in `gender` (French "un"/"une" in
/// 1, 21, 31... 81, 101...). Numbers of a million and more are said digit by digit.
pub fn say_number(lang: Lang, n: u32, gender: Gender) -> Vec<&'static str> {
    let mut ids = Vec::new();
    if n == 0 {
        ids.push(DIGITS[0]);
    } else if n >= 1_000_000 {
        let mut digits = Vec::new();
        let mut rest = n;
        while rest > 0 {
            digits.push(DIGITS[(rest % 10) as usize]);
            rest /= 10;
        }
        ids.extend(digits.into_iter().rev());
    } else {
        let (thousands, rest) = (n / 1000, n % 1000);
        match (lang, thousands) {
            (_, 0) => {}
            // "mille", not "un mille".
            (Lang::Fr, 1) => ids.push("thousand"),
            _ => {
                below_thousand(lang, thousands, Gender::Masculine, &mut ids);
                ids.push("thousand");
            }
        }
        below_thousand(lang, rest, gender, &mut ids);
    }
    ids
}

const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
/// Ids of 0..=19.
const UNDER_TWENTY: [&str; 20] =
    ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16", "17", "18", "19"];
/// Ids of the tens, 20..=90.
const TENS: [&str; 8] = ["20", "30", "40", "50", "60", "70", "80", "90"];

/// 1..=999 (nothing for 0).
fn below_thousand(lang: Lang, n: u32, gender: Gender, ids: &mut Vec<&'static str>) {
    let (hundreds, rest) = (n / 100, n % 100);
    match (lang, hundreds) {
        (_, 0) => {}
        // "cent", not "un cent".
        (Lang::Fr, 1) => ids.push("hundred"),
        _ => ids.extend([DIGITS[hundreds as usize], "hundred"]),
    }
    if rest == 0 {
        return;
    }
    let one = |g: Gender| if lang == Lang::Fr && g == Gender::Feminine { "1-feminine" } else { "1" };
    let unit = |u: u32| if u == 1 { one(gender) } else { UNDER_TWENTY[u as usize] };
    match lang {
        Lang::En => match rest {
            1..=19 => ids.push(unit(rest)),
            _ => {
                ids.push(TENS[(rest / 10 - 2) as usize]);
                if rest % 10 != 0 {
                    ids.push(unit(rest % 10));
                }
            }
        },
        Lang::Fr => match rest {
            1..=19 => ids.push(unit(rest)),
            // vingt, vingt et un(e), vingt-deux ... soixante-neuf.
            20..=69 => {
                ids.push(TENS[(rest / 10 - 2) as usize]);
                match rest % 10 {
                    0 => {}
                    1 => ids.extend(["and", one(gender)]),
                    u => ids.push(UNDER_TWENTY[u as usize]),
                }
            }
            // soixante-dix, soixante et onze, soixante-douze ... soixante-dix-neuf.
            70 => ids.push("70"),
            71 => ids.extend(["60", "and", "11"]),
            72..=79 => ids.extend(["60", UNDER_TWENTY[(rest - 60) as usize]]),
            // quatre-vingts, quatre-vingt-un(e) ... quatre-vingt-dix-neuf.
            80 => ids.push("80"),
            81..=89 => ids.extend(["80", unit(rest - 80)]),
            90 => ids.push("90"),
            _ => ids.extend(["80", UNDER_TWENTY[(rest - 80) as usize]]),
        },
    }
}

/// Why a prompt could not be generated, found or loaded.
#[derive(Debug)]
#[non_exhaustive]
pub enum PromptError {
    /// The speech synthesiser could not be started.
    EspeakMissing {
        /// The program tried.
        program: PathBuf,
        /// Why it could not run.
        source: io::Error,
    },
    /// The synthesiser ran but failed on one prompt.
    Espeak {
        /// Language of the prompt.
        lang: Lang,
        /// Prompt id.
        id: String,
        /// Exit status and error output.
        detail: String,
    },
    /// A file or directory operation failed.
    Io {
        /// The path concerned.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// A tenant name that is not a safe single path component.
    InvalidTenant(String),
    /// A prompt id that is not a safe file name (`[a-z0-9_-]`, at most 64 characters).
    InvalidId(String),
    /// [`PromptLibrary::ensure_prompts`] was given an id that is not in the catalogue.
    NotInCatalogue(String),
    /// Neither the tenant's file nor the system file exists.
    NotFound {
        /// Language asked for.
        lang: Lang,
        /// Prompt id.
        id: String,
        /// Where the system prompt was looked for.
        path: PathBuf,
    },
    /// The prompt file is not a usable WAV file.
    Wav(WavError),
}

impl fmt::Display for PromptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PromptError::EspeakMissing { program, source } => write!(
                f,
                "cannot run {} to generate the spoken prompts ({source}): install espeak-ng \
                 (Debian: apt-get install espeak-ng), or provide the prompt files",
                program.display()
            ),
            PromptError::Espeak { lang, id, detail } => {
                write!(f, "espeak-ng failed on prompt {id:?} in {lang}: {detail}")
            }
            PromptError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            PromptError::InvalidTenant(t) => write!(
                f,
                "invalid tenant name {t:?}: letters, digits, '.', '-' and '_' only, starting with a letter or digit"
            ),
            PromptError::InvalidId(id) => write!(f, "invalid prompt id {id:?}: a-z, 0-9, '-' and '_' only"),
            PromptError::NotInCatalogue(id) => write!(f, "prompt {id:?} is not in the catalogue"),
            PromptError::NotFound { lang, id, path } => {
                write!(f, "no prompt {id:?} in {lang}: {} does not exist", path.display())
            }
            PromptError::Wav(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for PromptError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PromptError::EspeakMissing { source, .. } | PromptError::Io { source, .. } => Some(source),
            PromptError::Wav(e) => Some(e),
            _ => None,
        }
    }
}

/// Whether `name` can be a tenant's directory: 1 to 64 ASCII letters, digits, `.`, `-` or `_`,
/// starting with a letter or digit, without `..` (so never `.`, `..`, a separator or an
/// absolute path).
pub fn is_valid_tenant(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        && !name.contains("..")
}

/// Whether `id` can be a prompt id: 1 to 64 of `a-z`, `0-9`, `-`, `_`, starting with a letter
/// or digit. Tenants may add prompts of their own under such ids.
pub fn is_valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_'))
}

/// What [`PromptLibrary::ensure`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EnsureReport {
    /// Files generated.
    pub generated: usize,
    /// Files that were already there.
    pub present: usize,
}

/// Prompt files under one directory (see the [module documentation](self)).
#[derive(Clone, Debug)]
pub struct PromptLibrary {
    dir: PathBuf,
    program: PathBuf,
    speed_wpm: u32,
}

/// Distinguishes temporary files of concurrent generations within one process.
static TEMP_COUNTER: AtomicU32 = AtomicU32::new(0);

impl PromptLibrary {
    /// The speech synthesiser run by default.
    pub const DEFAULT_PROGRAM: &'static str = "espeak-ng";
    /// Default speaking rate, words per minute (espeak-ng's own default, 175, is brisk for
    /// telephone prompts).
    pub const DEFAULT_SPEED_WPM: u32 = 150;

    /// A library in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        PromptLibrary {
            dir: dir.into(),
            program: PathBuf::from(Self::DEFAULT_PROGRAM),
            speed_wpm: Self::DEFAULT_SPEED_WPM,
        }
    }

    /// Runs `program` instead of `espeak-ng` found on the `PATH`.
    pub fn with_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = program.into();
        self
    }

    /// Speaks at `words_per_minute` (espeak-ng's `-s`, 80 to 450).
    pub fn with_speed(mut self, words_per_minute: u32) -> Self {
        self.speed_wpm = words_per_minute.clamp(80, 450);
        self
    }

    /// The library's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the system prompt `id` in `lang` lives: `<dir>/<lang>/<id>.wav`.
    pub fn system_path(&self, lang: Lang, id: &str) -> Result<PathBuf, PromptError> {
        if !is_valid_id(id) {
            return Err(PromptError::InvalidId(id.to_owned()));
        }
        Ok(self.dir.join(lang.code()).join(format!("{id}.wav")))
    }

    /// Where `tenant`'s replacement of `id` in `lang` lives:
    /// `<dir>/tenants/<tenant>/<lang>/<id>.wav`.
    pub fn tenant_path(&self, tenant: &str, lang: Lang, id: &str) -> Result<PathBuf, PromptError> {
        if !is_valid_tenant(tenant) {
            return Err(PromptError::InvalidTenant(tenant.to_owned()));
        }
        if !is_valid_id(id) {
            return Err(PromptError::InvalidId(id.to_owned()));
        }
        Ok(self.dir.join("tenants").join(tenant).join(lang.code()).join(format!("{id}.wav")))
    }

    /// Generates every catalogue prompt of `langs` that has no file yet.
    pub fn ensure(&self, langs: &[Lang]) -> Result<EnsureReport, PromptError> {
        let ids: Vec<&str> = CATALOGUE.iter().map(|p| p.id).collect();
        self.ensure_prompts(langs, &ids)
    }

    /// Generates the prompts `ids` (from the catalogue) of `langs` that have no file yet. Each is
    /// written to a temporary name and renamed once complete, so an interruption leaves no
    /// partial prompt under its real name. `espeak-ng` is needed only if something is missing.
    pub fn ensure_prompts(&self, langs: &[Lang], ids: &[&str]) -> Result<EnsureReport, PromptError> {
        let mut report = EnsureReport::default();
        let mut missing = Vec::new();
        for &lang in langs {
            for &id in ids {
                let prompt = prompt(id).ok_or_else(|| PromptError::NotInCatalogue(id.to_owned()))?;
                let path = self.system_path(lang, id)?;
                if path.is_file() {
                    report.present += 1;
                } else {
                    missing.push((lang, prompt, path));
                }
            }
        }
        if missing.is_empty() {
            return Ok(report);
        }
        self.check_program()?;
        for &lang in langs {
            let dir = self.dir.join(lang.code());
            std::fs::create_dir_all(&dir).map_err(|source| PromptError::Io { path: dir, source })?;
        }
        // A few synthesisers at once: each is single-threaded and short-lived.
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let first_error = Mutex::new(None);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    while !failed.load(Ordering::Relaxed) {
                        let Some((lang, prompt, path)) = missing.get(next.fetch_add(1, Ordering::Relaxed)) else {
                            break;
                        };
                        if let Err(e) = self.generate(*lang, prompt, path) {
                            failed.store(true, Ordering::Relaxed);
                            if let Ok(mut slot) = first_error.lock() {
                                slot.get_or_insert(e);
                            }
                        }
                    }
                });
            }
        });
        if let Some(e) = first_error.into_inner().ok().flatten() {
            return Err(e);
        }
        report.generated = missing.len();
        Ok(report)
    }

    fn check_program(&self) -> Result<(), PromptError> {
        let missing = |source| PromptError::EspeakMissing { program: self.program.clone(), source };
        let output = Command::new(&self.program).arg("--version").stdin(Stdio::null()).output().map_err(missing)?;
        if output.status.success() {
            Ok(())
        } else {
            Err(missing(io::Error::other(format!("`--version` exited with {}", output.status))))
        }
    }

    /// Synthesises one prompt into `path` through a temporary file.
    fn generate(&self, lang: Lang, prompt: &Prompt, path: &Path) -> Result<(), PromptError> {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = path.with_file_name(format!(".{}.{}-{n}.partial.wav", prompt.id, std::process::id()));
        let result = self.synthesise(lang, prompt, &temp).and_then(|()| {
            std::fs::rename(&temp, path).map_err(|source| PromptError::Io { path: path.to_owned(), source })
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result
    }

    fn synthesise(&self, lang: Lang, prompt: &Prompt, out: &Path) -> Result<(), PromptError> {
        let failed = |detail: String| PromptError::Espeak { lang, id: prompt.id.to_owned(), detail };
        let output = Command::new(&self.program)
            .args(["-v", lang.code(), "-s", &self.speed_wpm.to_string(), "-w"])
            .arg(out)
            .arg(prompt.text(lang))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| failed(format!("cannot run {}: {e}", self.program.display())))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            return Err(failed(format!("{} ({})", output.status, stderr.trim())));
        }
        // espeak-ng reports some failures (an unknown voice) on stderr only: check the result.
        let unreadable = |e: hound::Error| failed(format!("unreadable WAV written: {e} ({})", stderr.trim()));
        let mut reader = hound::WavReader::open(out).map_err(unreadable)?;
        let spec = reader.spec();
        if spec.channels != 1 || spec.bits_per_sample != 16 || spec.sample_format != hound::SampleFormat::Int {
            return Err(failed(format!("unexpected WAV format written: {spec:?}")));
        }
        let samples = reader.samples::<i16>().collect::<Result<Vec<i16>, _>>().map_err(unreadable)?;
        drop(reader);
        let Some(speech) = trim_silence(&samples, spec.sample_rate) else {
            return Err(failed(format!("silent WAV written ({})", stderr.trim())));
        };
        // Without the pause espeak-ng leaves after the last word (about 0.4 s), prompts can be
        // chained into sentences.
        let mut writer = hound::WavWriter::create(out, spec).map_err(unreadable)?;
        for &sample in speech {
            writer.write_sample(sample).map_err(unreadable)?;
        }
        writer.finalize().map_err(unreadable)
    }

    /// The file to play for `id` in `lang`: `tenant`'s replacement if it has one, otherwise the
    /// system prompt.
    pub fn lookup(&self, tenant: Option<&str>, lang: Lang, id: &str) -> Result<PathBuf, PromptError> {
        if let Some(tenant) = tenant {
            let path = self.tenant_path(tenant, lang, id)?;
            if path.is_file() {
                return Ok(path);
            }
        }
        let path = self.system_path(lang, id)?;
        if path.is_file() { Ok(path) } else { Err(PromptError::NotFound { lang, id: id.to_owned(), path }) }
    }

    /// The samples of [`lookup`](Self::lookup)'s file, mono 16-bit at `rate` (8000 or 16000 Hz).
    /// This reads and resamples the file: callers keep the result.
    pub fn load(&self, tenant: Option<&str>, lang: Lang, id: &str, rate: u32) -> Result<Vec<i16>, PromptError> {
        load_wav(&self.lookup(tenant, lang, id)?, rate).map_err(PromptError::Wav)
    }

    /// The prompts `ids` one after another (as from [`say_count`]), at `rate`.
    pub fn load_sequence(
        &self,
        tenant: Option<&str>,
        lang: Lang,
        ids: &[&str],
        rate: u32,
    ) -> Result<Vec<i16>, PromptError> {
        let mut samples = Vec::new();
        for id in ids {
            samples.extend(self.load(tenant, lang, id, rate)?);
        }
        Ok(samples)
    }
}

/// `samples` without the silence before the first and after the last sound (keeping 10 ms
/// before and 60 ms after it, for the onset and the decay); none if all is silence.
fn trim_silence(samples: &[i16], rate: u32) -> Option<&[i16]> {
    /// About −54 dBFS.
    const THRESHOLD: u16 = 64;
    let loud = |s: &i16| s.unsigned_abs() > THRESHOLD;
    let first = samples.iter().position(loud)?;
    let last = samples.iter().rposition(loud)?;
    let ms = |n: u32| (rate * n / 1000) as usize;
    Some(&samples[first.saturating_sub(ms(10))..(last + 1 + ms(60)).min(samples.len())])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rms;

    /// A fresh directory in the temporary directory, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            static COUNTER: AtomicU32 = AtomicU32::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("switchboard-prompts-{}-{n}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const REQUIRED: &[&str] = &[
        "0",
        "1",
        "2",
        "3",
        "4",
        "5",
        "6",
        "7",
        "8",
        "9",
        "star",
        "pound",
        "please-hold",
        "not-available",
        "you-have",
        "new-messages",
        "no-new-messages",
        "message",
        "messages",
        "press",
        "for",
        "to",
        "main-menu",
        "invalid-option",
        "goodbye",
        "enter-pin",
        "leave-message",
        "thank-you",
        "call-important",
        "caller-number",
        "welcome",
        "conference-starting",
        "now-muted",
        "now-unmuted",
        "10",
        "15",
        "20",
        "30",
        "90",
        "hundred",
    ];

    #[test]
    fn catalogue_has_every_id_in_both_languages() {
        for (i, prompt) in CATALOGUE.iter().enumerate() {
            assert!(is_valid_id(prompt.id), "{}", prompt.id);
            assert!(CATALOGUE[..i].iter().all(|other| other.id != prompt.id), "{} twice", prompt.id);
            for lang in Lang::ALL {
                let text = prompt.text(lang);
                assert!(!text.trim().is_empty() && text.trim() == text, "{} in {lang}: {text:?}", prompt.id);
            }
        }
        for id in REQUIRED {
            assert!(prompt(id).is_some(), "{id} missing");
        }
        // Every sequence the helpers build uses catalogue ids only.
        for lang in Lang::ALL {
            for noun in [Noun::NewMessage, Noun::SavedMessage, Noun::Message, Noun::Minute] {
                for n in (0..=2100).chain([9_999, 21_001, 999_999, 1_000_000, u32::MAX]) {
                    for id in say_count(lang, n, noun) {
                        assert!(prompt(id).is_some(), "{lang} {n} {noun:?}: {id}");
                    }
                }
            }
        }
    }

    #[test]
    fn say_count_english() {
        let en = |n| say_count(Lang::En, n, Noun::NewMessage);
        assert_eq!(en(0), ["you-have", "no-new-messages"]);
        assert_eq!(en(1), ["you-have", "1", "new-message"]);
        assert_eq!(en(2), ["you-have", "2", "new-messages"]);
        assert_eq!(en(21), ["you-have", "20", "1", "new-messages"]);
        assert_eq!(say_count(Lang::En, 0, Noun::Minute), ["you-have", "no", "minutes"]);
        let text = |n| spoken_text(Lang::En, &say_number(Lang::En, n, Gender::Masculine));
        assert_eq!(text(13), "thirteen");
        assert_eq!(text(100), "one hundred");
        assert_eq!(text(345), "three hundred forty five");
        assert_eq!(text(2_021), "two thousand twenty one");
        assert_eq!(text(1_000_000), "one zero zero zero zero zero zero");
    }

    #[test]
    fn say_count_french_agrees_in_gender_and_number() {
        let fr = |n, noun| spoken_text(Lang::Fr, &say_count(Lang::Fr, n, noun));
        assert_eq!(say_count(Lang::Fr, 0, Noun::NewMessage), ["you-have-none", "no-new-messages"]);
        assert_eq!(say_count(Lang::Fr, 1, Noun::NewMessage), ["you-have", "1", "new-message"]);
        assert_eq!(say_count(Lang::Fr, 2, Noun::NewMessage), ["you-have", "2", "new-messages"]);
        assert_eq!(say_count(Lang::Fr, 21, Noun::NewMessage), ["you-have", "20", "and", "1", "new-messages"]);
        assert_eq!(fr(0, Noun::NewMessage), "vous n'avez aucun nouveau message");
        assert_eq!(fr(1, Noun::NewMessage), "vous avez un nouveau message");
        assert_eq!(fr(3, Noun::NewMessage), "vous avez trois nouveaux messages");
        assert_eq!(fr(21, Noun::NewMessage), "vous avez vingt et un nouveaux messages");
        assert_eq!(fr(0, Noun::SavedMessage), "vous n'avez aucun message sauvegardé");
        assert_eq!(fr(2, Noun::SavedMessage), "vous avez deux messages sauvegardés");
        assert_eq!(fr(0, Noun::Minute), "vous n'avez aucune minute");
        assert_eq!(fr(1, Noun::Minute), "vous avez une minute");
        assert_eq!(fr(21, Noun::Minute), "vous avez vingt et une minutes");
        assert_eq!(say_count(Lang::Fr, 81, Noun::Minute), ["you-have", "80", "1-feminine", "minutes"]);
        let number = |n| spoken_text(Lang::Fr, &say_number(Lang::Fr, n, Gender::Masculine));
        for (n, text) in [
            (17, "dix-sept"),
            (70, "soixante-dix"),
            (71, "soixante et onze"),
            (77, "soixante dix-sept"),
            (80, "quatre-vingts"),
            (81, "quatre-vingts un"),
            (91, "quatre-vingts onze"),
            (99, "quatre-vingts dix-neuf"),
            (100, "cent"),
            (101, "cent un"),
            (200, "deux cent"),
            (1_000, "mille"),
            (2_021, "deux mille vingt et un"),
            (21_000, "vingt et un mille"),
        ] {
            assert_eq!(number(n), text, "{n}");
        }
    }

    #[test]
    fn languages_parse_from_tags() {
        assert_eq!("fr".parse(), Ok(Lang::Fr));
        assert_eq!("en-GB".parse(), Ok(Lang::En));
        assert_eq!("FR_ca".parse(), Ok(Lang::Fr));
        assert_eq!("de".parse::<Lang>(), Err(UnknownLang("de".into())));
    }

    #[test]
    fn path_traversal_tenant_names_are_refused() {
        let library = PromptLibrary::new("/var/lib/switchboard/prompts");
        for bad in [
            "",
            ".",
            "..",
            "../etc",
            "a/../../b",
            "a/b",
            "a\\b",
            "/etc",
            ".hidden",
            "a..b",
            "a\0b",
            "é",
            &"x".repeat(65),
        ] {
            assert!(
                matches!(library.lookup(Some(bad), Lang::En, "goodbye"), Err(PromptError::InvalidTenant(_))),
                "{bad:?}"
            );
        }
        for bad in ["../goodbye", "a/b", "Goodbye", "", ".x"] {
            assert!(matches!(library.lookup(None, Lang::En, bad), Err(PromptError::InvalidId(_))), "{bad:?}");
            assert!(matches!(library.lookup(Some("acme"), Lang::En, bad), Err(PromptError::InvalidId(_))), "{bad:?}");
        }
        assert_eq!(
            library.tenant_path("acme.test", Lang::Fr, "goodbye").unwrap(),
            Path::new("/var/lib/switchboard/prompts/tenants/acme.test/fr/goodbye.wav")
        );
        assert!(is_valid_tenant("tenant_1-b"));
    }

    fn write_wav(path: &Path, value: i16, samples: usize) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::create(path, spec).unwrap();
        for _ in 0..samples {
            writer.write_sample(value).unwrap();
        }
        writer.finalize().unwrap();
    }

    #[test]
    fn tenant_override_is_preferred_over_the_system_file() {
        let dir = TempDir::new("override");
        let library = PromptLibrary::new(&dir.0);
        let system = library.system_path(Lang::En, "welcome").unwrap();
        let mine = library.tenant_path("acme.test", Lang::En, "welcome").unwrap();
        write_wav(&system, 100, 80);
        write_wav(&mine, 200, 160);
        assert_eq!(library.lookup(Some("acme.test"), Lang::En, "welcome").unwrap(), mine);
        assert_eq!(library.lookup(Some("other.test"), Lang::En, "welcome").unwrap(), system);
        assert_eq!(library.lookup(None, Lang::En, "welcome").unwrap(), system);
        assert_eq!(library.load(Some("acme.test"), Lang::En, "welcome", 8000).unwrap(), vec![200; 160]);
        assert_eq!(library.load(None, Lang::En, "welcome", 8000).unwrap(), vec![100; 80]);
        assert_eq!(library.load_sequence(None, Lang::En, &["welcome", "welcome"], 8000).unwrap().len(), 160);
        // A tenant-only prompt, and one nobody has.
        write_wav(&library.tenant_path("acme.test", Lang::Fr, "greeting").unwrap(), 1, 8);
        assert!(library.lookup(Some("acme.test"), Lang::Fr, "greeting").is_ok());
        let e = library.lookup(Some("acme.test"), Lang::Fr, "welcome").unwrap_err();
        assert!(matches!(e, PromptError::NotFound { .. }));
        assert!(e.to_string().contains("welcome"), "{e}");
        // A broken file names itself.
        let broken = library.system_path(Lang::Fr, "welcome").unwrap();
        std::fs::create_dir_all(broken.parent().unwrap()).unwrap();
        std::fs::write(&broken, "junk").unwrap();
        let e = library.load(None, Lang::Fr, "welcome", 8000).unwrap_err().to_string();
        assert!(e.contains("fr/welcome.wav"), "{e}");
    }

    #[test]
    fn silence_is_trimmed_around_the_sound() {
        let mut samples = vec![0i16; 8000];
        samples[4000..4800].fill(1000);
        let trimmed = trim_silence(&samples, 8000).unwrap();
        assert_eq!(trimmed.len(), 80 + 800 + 480);
        assert_eq!(trim_silence(&[0, 5, -64], 8000), None);
        assert_eq!(trim_silence(&[-32768], 8000), Some(&[-32768i16][..]));
    }

    #[test]
    fn missing_synthesiser_is_a_clear_error_and_only_needed_for_missing_files() {
        let dir = TempDir::new("no-espeak");
        let library = PromptLibrary::new(&dir.0).with_program(dir.0.join("no-such-espeak-ng"));
        let e = library.ensure(&[Lang::En]).unwrap_err();
        assert!(matches!(e, PromptError::EspeakMissing { .. }), "{e}");
        assert!(e.to_string().contains("install espeak-ng"), "{e}");
        write_wav(&library.system_path(Lang::En, "goodbye").unwrap(), 5, 10);
        assert_eq!(
            library.ensure_prompts(&[Lang::En], &["goodbye"]).unwrap(),
            EnsureReport { generated: 0, present: 1 }
        );
        assert!(matches!(library.ensure_prompts(&[Lang::En], &["nope"]), Err(PromptError::NotInCatalogue(_))));
    }

    /// Share of 20 ms frames louder than −40 dBm0 (about 330 of 16-bit RMS).
    fn voiced_share(samples: &[i16]) -> f64 {
        let frames: Vec<&[i16]> = samples.chunks_exact(160).collect();
        frames.iter().filter(|f| rms(f) > 330.0).count() as f64 / frames.len().max(1) as f64
    }

    #[test]
    fn espeak_generates_speech_prompts() {
        if matches!(Command::new("espeak-ng").arg("--version").output(), Err(e) if e.kind() == io::ErrorKind::NotFound)
        {
            println!("NOTICE: espeak-ng is not installed; prompt generation not tested");
            return;
        }
        let dir = TempDir::new("espeak");
        let library = PromptLibrary::new(&dir.0);
        let ids = ["1", "goodbye", "please-hold", "not-available"];
        let report = library.ensure_prompts(&Lang::ALL, &ids).unwrap();
        assert_eq!(report, EnsureReport { generated: 8, present: 0 });
        for lang in Lang::ALL {
            for id in ids {
                let samples = library.load(None, lang, id, 8000).unwrap();
                let seconds = samples.len() as f64 / 8000.0;
                let words = prompt(id).unwrap().text(lang).split([' ', '\'']).count() as f64;
                // At 150 words per minute, plus espeak-ng's short silences around the words.
                assert!((0.2..0.5 + words * 0.8).contains(&seconds), "{lang}/{id}: {seconds} s");
                let share = voiced_share(&samples);
                assert!(share > 0.3, "{lang}/{id}: only {share} of frames are voiced");
                assert!(rms(&samples) > 500.0, "{lang}/{id}: rms {}", rms(&samples));
                // Trimmed: sound within the last 100 ms, so prompts chain into sentences.
                let tail = &samples[samples.len() - 800..];
                assert!(tail.iter().any(|s| s.unsigned_abs() > 64), "{lang}/{id}: silent tail");
            }
            let leftovers: Vec<_> = std::fs::read_dir(dir.0.join(lang.code()))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|name| name.contains("partial"))
                .collect();
            assert!(leftovers.is_empty(), "{leftovers:?}");
        }
        // Longer texts make longer prompts; 16 kHz loads too.
        let short = library.load(None, Lang::Fr, "1", 16000).unwrap();
        let long = library.load(None, Lang::Fr, "not-available", 16000).unwrap();
        assert!(long.len() > 2 * short.len());
        // A second start generates nothing.
        assert_eq!(library.ensure_prompts(&Lang::ALL, &ids).unwrap(), EnsureReport { generated: 0, present: 8 });
        let sentence = say_count(Lang::Fr, 21, Noun::NewMessage);
        let missing = library.load_sequence(None, Lang::Fr, &sentence, 8000).unwrap_err();
        assert!(matches!(missing, PromptError::NotFound { .. }));
    }
}
