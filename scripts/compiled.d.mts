// Types of compiled.mjs (plain JavaScript: it runs before any TypeScript loader).
export declare const STAMP_FILE: string;
export declare const BUNDLE_SUFFIX: string;
export interface WorkspacePackage {
  name: string;
  dir: string;
  exports: string | Record<string, string> | undefined;
}
export declare function workspacePackages(root: string): WorkspacePackage[];
export declare function sourceStamp(root: string): { files: number; bytes: number; newest: number };
export declare function compiledIsFresh(root: string, env?: NodeJS.ProcessEnv): boolean;
export declare function importEntry(root: string, dir: string, fresh?: boolean): Promise<Record<string, unknown>>;
