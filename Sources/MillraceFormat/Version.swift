/// The release version of this build.
public enum MillraceVersion {
    public static let current = "0.1.0"
}
